"""Word timings: the CTC Viterbi pass recovers a planted path; on tiny random aligner weights every original word
gets one timing, in order, inside the audio, named as the user wrote it."""

import numpy as np
import pytest

from voxport.audio.join import join_audio
from voxport.text.align import Aligner, chunk_times, ctc_align, source_words, word_times, write_tiny_aligner
from voxport.text.plan import plan_text
from voxport.text.segments import Break

RATE = 24000


@pytest.fixture(scope="module")
def aligner(tmp_path_factory):
    return Aligner.load(write_tiny_aligner(tmp_path_factory.mktemp("models") / "tiny-aligner"))


def test_viterbi_finds_the_planted_path():
    """Frames that clearly say blank, a, a, blank, b, b, b, a (with a repeated token) come back as those spans."""
    path = [0, 1, 1, 0, 2, 2, 2, 0, 0, 1, 0]
    log_probs = np.full((len(path), 3), np.log(0.05))
    log_probs[np.arange(len(path)), path] = np.log(0.9)
    assert ctc_align(log_probs, [1, 2, 1], blank=0) == [(1, 2), (4, 6), (9, 9)]
    repeated = [0, 1, 0, 1, 0]
    log_probs = np.full((len(repeated), 2), np.log(0.1))
    log_probs[np.arange(len(repeated)), repeated] = np.log(0.9)
    assert ctc_align(log_probs, [1, 1], blank=0) == [(1, 1), (3, 3)]
    assert ctc_align(log_probs[:2], [1, 1], blank=0) is None  # two equal tokens need a blank between them


def test_source_words_are_the_users_words():
    text = '<speak>It costs $3.50.<break time="700ms"/>价格是¥3.50，<sub alias="Doctor">Dr.</sub> Lee!</speak>'
    plan = plan_text(text)
    words = [[text[start:end] for start, end in source_words(segment.spoken, text)] for segment in plan.speech]
    assert words == [["It", "costs", "$3.50"], ["价", "格", "是", "¥3.50", "Dr", "Lee"]]


@pytest.mark.parametrize(
    "text",
    [
        '<speak>It costs $3.50.<break time="700ms"/>See you on 2026-12-05 at 10:30.</speak>',
        "会议在2026年12月5日上午10:30，电话13812345678。",
        "Plain words, no numbers at all: one two three.",
    ],
)
def test_word_timings_are_ordered_inside_the_audio_one_per_word(aligner, text):
    plan = plan_text(text)
    rng = np.random.default_rng(0)
    parts = [
        segment.seconds
        if isinstance(segment, Break)
        else (0.1 * rng.standard_normal(int(RATE * (0.3 + 0.05 * len(segment.text))))).astype(np.float32)
        for segment in plan.segments
    ]
    joined = join_audio(parts, RATE)
    words = word_times(aligner, plan, joined)
    expected = [text[start:end] for segment in plan.speech for start, end in source_words(segment.spoken, text)]
    assert [word.word for word in words] == expected
    assert all(text[word.source_start : word.source_end] == word.word for word in words)
    duration = len(joined.audio) / RATE
    for before, after in zip(words, words[1:]):
        assert before.start <= after.start and before.end <= after.start + 1e-9
    chunks = chunk_times(plan, joined)
    for word in words:
        assert 0 <= word.start <= word.end <= duration
        assert any(chunk.start <= word.start and word.end <= chunk.end for chunk in chunks)


def test_chunk_times_follow_from_the_audio_lengths():
    plan = plan_text('<speak>One.<break time="500ms"/>Two.</speak>')
    joined = join_audio([np.ones(RATE, np.float32) * 0.1, 0.5, np.ones(RATE // 2, np.float32) * 0.1], RATE)
    chunks = chunk_times(plan, joined)
    assert [(chunk.text, chunk.start, chunk.end) for chunk in chunks] == [("One.", 0.0, 1.0), ("Two.", 1.5, 2.0)]
    assert plan.source[chunks[1].source_start : chunks[1].source_end] == "Two."


def test_too_little_audio_shares_the_time_out(aligner):
    plan = plan_text("a long sentence in a very short clip")
    joined = join_audio([np.zeros(800, np.float32)], RATE)
    words = word_times(aligner, plan, joined)
    assert len(words) == 8 and words[-1].end == pytest.approx(800 / RATE)
    assert all(before.end <= after.start + 1e-9 for before, after in zip(words, words[1:]))
