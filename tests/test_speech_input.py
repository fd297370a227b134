"""Text streamed in pieces (SpeechInput): the chunks it hands out, and the audio they make, are those of the whole
text in one request, and the first chunk goes out before the text is finished."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from voxport.errors import InputError
from voxport.services.speech import InputChunk, SpeechInput, SpeechRequest, SpeechService

PARAGRAPH = (
    "The committee met on Dec. 5 at 10:30 am to review the budget. Dr. Smith said the cost rose 12% to $5 million, "
    "about 1,234 dollars per seat. No. 7 on the list was the new road: it runs 25 km, from the old mill to the "
    "harbour. Everyone agreed, after a long talk, that the plan should go ahead in 2026. The next meeting, "
    "the chair said, will be on 3/14/2026; bring your notes, your questions, and your patience! Thank you."
)
# (no closing quote right after a sentence's end: the whole-text path itself fails on those, see longform)
WORDS = (
    "the a plan road Dr. Mr. No. etc. Dec. 5 12% $5 million 1,234 10:30 am 7 pm 25 km 2026 in 3/14/2026 "
    "+1 555 123 4567 www.example.com 年 2026年 5G — , ; : . ! ? … ) ( word. Hello, world."
).split()


def pieces_of(text: str, rng: random.Random) -> list[str]:
    """`text` cut at random places (inside words too), as an LLM's tokens come."""
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, len(text) // 3)))
    return [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]


def streamed_chunks(service: SpeechService, pieces: list[str], normalize: bool = True) -> list[str]:
    stream = SpeechInput(service, SpeechRequest("", seed=1, normalize=normalize))
    handed: list[InputChunk] = []
    for piece in pieces:
        handed += stream.add(piece)
    handed += stream.flush(end=True)
    return [item.plan.chunks[item.chunk] for item in handed]


@pytest.fixture(scope="module")
def service(tiny_csm) -> SpeechService:
    return SpeechService(tiny_csm)


def test_word_by_word_hands_out_the_whole_texts_chunks_early(service):
    words = re.findall(r"\S+\s*", PARAGRAPH)
    whole = service.plan(SpeechRequest(PARAGRAPH)).chunks
    assert len(whole) >= 3
    stream = SpeechInput(service, SpeechRequest("", seed=1))
    handed, first_at = [], None
    for index, word in enumerate(words):
        made = stream.add(word)
        if made and first_at is None:
            first_at = index
        handed += made
    handed += stream.flush(end=True)
    assert [item.plan.chunks[item.chunk] for item in handed] == list(whole)
    assert first_at is not None and first_at < len(words) - 10  # the first chunk went out long before the end
    assert [item.follows for item in handed] == [True] * (len(whole) - 1) + [False]


@pytest.mark.parametrize("normalize", [True, False])
def test_random_texts_cut_anywhere_chunk_as_the_whole_text(service, normalize):
    """The rule that makes a chunk sure, tried on texts full of what normalization and chunking look ahead at."""
    rng = random.Random(26)
    for _ in range(40):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 120)))
        whole = service.plan(SpeechRequest(text, normalize=normalize)).chunks
        assert streamed_chunks(service, pieces_of(text, rng), normalize) == list(whole), text
        assert streamed_chunks(service, re.findall(r"\S+\s*", text), normalize) == list(whole), text


def test_streamed_audio_is_the_whole_texts(service):
    text = "One short line. Then another one, a little longer. " * 6
    request = SpeechRequest(text, seed=5, max_seconds=0.16)
    whole = service.speak(request)
    stream = SpeechInput(service, SpeechRequest("", seed=5, max_seconds=0.16))
    audio, early = [], 0
    for word in re.findall(r"\S+\s*", text):
        chunks = stream.add(word)
        early += len(chunks)
        audio += [piece.spoken.audio for piece in stream.pieces(chunks)]
    audio += [piece.spoken.audio for piece in stream.pieces(stream.flush(end=True), ended=True)]
    assert whole.chunks >= 2 and early >= 1
    np.testing.assert_array_equal(np.concatenate(audio), whole.audio)


def test_a_flush_speaks_the_text_so_far_and_the_voice_goes_on(service):
    stream = SpeechInput(service, SpeechRequest("", seed=5, max_seconds=0.16))
    assert stream.add("Half a clause, ") == []
    flushed = stream.flush()
    assert [item.plan.chunks[item.chunk] for item in flushed] == ["Half a clause,"]
    assert flushed[-1].follows is None  # more text may come: its fade waits
    first = [piece.spoken.audio for piece in stream.pieces(flushed)]
    rest = stream.add("and the rest.")
    assert rest == []
    last = list(stream.pieces(stream.flush(end=True), ended=True))
    assert [piece.text for piece in last][0] == "Half a clause,"  # the held fade goes out first
    assert last[-1].chunk == 1 and sum(len(a) for a in first) > 0


def test_streamed_settings_are_checked_before_any_text(service):
    with pytest.raises(InputError, match="plain text"):
        SpeechInput(service, SpeechRequest("", ssml=True))
    with pytest.raises(InputError, match="temperature"):
        SpeechInput(service, SpeechRequest("", temperature=-1.0))
