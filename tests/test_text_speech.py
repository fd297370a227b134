"""The text layer with a real model's code on tiny random weights: a plan spoken piece by piece, joined with its
breaks, the pauses measured in the output audio, and the words timed in it in the input's own words."""

import numpy as np
import pytest

from voxport.audio.join import join_audio
from voxport.services.speech import SpeechRequest, SpeechService
from voxport.text.align import Aligner, chunk_times, source_words, word_times, write_tiny_aligner
from voxport.text.plan import plan_text
from voxport.text.segments import Break

ISSUE_EXAMPLE = '<speak>It costs $3.50.<break time="700ms"/>See you on 2026-12-05 at 10:30.</speak>'


def silent_runs(audio: np.ndarray, rate: int, floor: float = 1e-4, shortest: float = 0.02) -> list[tuple[int, int]]:
    quiet = np.concatenate([[False], np.abs(audio) < floor, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    return [(int(start), int(end)) for start, end in zip(edges[::2], edges[1::2]) if end - start >= shortest * rate]


@pytest.fixture(scope="module")
def spoken(tiny_csm):
    plan = plan_text(ISSUE_EXAMPLE)
    parts, service = [], SpeechService(tiny_csm)
    for index, segment in enumerate(plan.segments):
        if isinstance(segment, Break):
            parts.append(segment.seconds)
        else:
            parts.append(service.speak(SpeechRequest(segment.text, max_seconds=0.8, seed=index)).audio)
    return plan, join_audio(parts, tiny_csm.sample_rate)


def test_the_break_is_heard_as_a_pause_of_its_length(spoken, tiny_csm):
    plan, joined = spoken
    rate = joined.sample_rate
    frame = rate * 0.080
    start, end = joined.spans[1]
    assert end - start == round(0.7 * rate) and not joined.audio[start:end].any()
    pauses = [run for run in silent_runs(joined.audio, rate) if run[0] <= start and end <= run[1]]
    assert len(pauses) == 1
    assert abs((pauses[0][1] - pauses[0][0]) - 0.7 * rate) <= frame


def test_words_are_timed_in_the_original_text(spoken, tmp_path):
    plan, joined = spoken
    aligner = Aligner.load(write_tiny_aligner(tmp_path / "aligner"))
    words = word_times(aligner, plan, joined)
    assert [word.word for word in words] == ["It", "costs", "$3.50", "See", "you", "on", "2026-12-05", "at", "10:30"]
    chunks = chunk_times(plan, joined)
    assert chunks[0].end + 0.7 == pytest.approx(chunks[1].start)
    for word in words:
        assert any(chunk.start <= word.start <= word.end <= chunk.end for chunk in chunks)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(words, words[1:]))
    assert sum(len(source_words(speech.spoken, plan.source)) for speech in plan.speech) == len(words)
