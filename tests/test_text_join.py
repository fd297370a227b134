"""Speech and breaks joined: each break's silence measured in the joined audio, no clicks at the joins, and the
start and end of each piece known exactly."""

import numpy as np
import pytest

from voxport.audio.join import join_audio
from voxport.text.plan import plan_text
from voxport.text.segments import Break

RATE = 24000
FRAME = int(0.080 * RATE)  # one 80 ms codec frame


def voiced(seconds: float, seed: int) -> np.ndarray:
    """Stand-in speech: a loud tone that does not start or end at zero, the worst case for a click."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 220 * t + 1.0 + seed) + 0.3).astype(np.float32)


def silent_runs(audio: np.ndarray, floor: float = 1e-3, shortest: float = 0.010) -> list[int]:
    """Lengths of the runs of near-silent samples at least `shortest` seconds long, as one would measure pauses in a
    recording (a waveform passing through zero is not a pause)."""
    quiet = np.concatenate([[False], np.abs(audio) < floor, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    runs = [int(end - start) for start, end in zip(edges[::2], edges[1::2])]
    return [run for run in runs if run >= shortest * RATE]


def test_ssml_breaks_are_heard_as_silences_of_their_length():
    plan = plan_text(
        '<speak>One.<break time="700ms"/>Two.<break time="1.5s"/>Three.<break strength="weak"/>Four.</speak>'
    )
    parts = [
        segment.seconds if isinstance(segment, Break) else voiced(0.4 + 0.1 * index, index)
        for index, segment in enumerate(plan.segments)
    ]
    joined = join_audio(parts, RATE)
    pauses = [segment.seconds for segment in plan.segments if isinstance(segment, Break)]
    measured = silent_runs(joined.audio)
    assert len(measured) == len(pauses) == 3
    for samples, seconds in zip(measured, pauses):
        assert abs(samples - seconds * RATE) <= FRAME
    for index, part in enumerate(parts):  # the breaks' silences are exact to the sample
        start, end = joined.spans[index]
        if not isinstance(part, np.ndarray):
            assert end - start == round(part * RATE)
            assert not joined.audio[start:end].any()
    assert len(joined.audio) == sum(len(p) if isinstance(p, np.ndarray) else round(p * RATE) for p in parts)


def test_piece_times_follow_from_the_audio_lengths():
    joined = join_audio([voiced(0.5, 0), 0.25, voiced(1.0, 1)], RATE)
    assert joined.seconds(0) == (0.0, 0.5)
    assert joined.seconds(1) == (0.5, 0.75)
    assert joined.seconds(2) == (0.75, 1.75)


@pytest.mark.parametrize("fade, clicks", [(None, False), (0.0, True)])
def test_joins_have_no_clicks(fade, clicks):
    """A join's sample-to-sample step stays as small as within the speech; without fades (the planted fault)
    the cut waveform jumps."""
    parts = [voiced(0.3, 0), voiced(0.3, 2), 0.2, voiced(0.3, 4)]
    joined = join_audio(parts, RATE) if fade is None else join_audio(parts, RATE, fade_seconds=fade)
    steps = np.abs(np.diff(joined.audio))
    inside = np.abs(np.diff(parts[0])).max()
    assert (steps.max() > 2 * inside) == clicks


def test_the_inputs_are_not_changed_and_the_ends_are_not_faded():
    first, second = voiced(0.2, 0), voiced(0.2, 1)
    kept = first.copy()
    joined = join_audio([first, 0.1, second], RATE)
    assert np.array_equal(first, kept)
    assert joined.audio[0] == first[0] and joined.audio[-1] == second[-1]


def test_negative_silence_is_refused():
    with pytest.raises(ValueError, match="expected a length >= 0"):
        join_audio([voiced(0.1, 0), -1.0], RATE)
