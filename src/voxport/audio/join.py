"""Pieces of speech and exact silences joined into one waveform without clicks: each join is smoothed by a short
fade inside the speech on either side, so no length changes and every silence is exactly as long as asked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FADE_SECONDS = 0.005  # long enough to remove the click of a cut waveform, too short to hear as a fade


@dataclass(frozen=True)
class Joined:
    """The joined audio, and where each input part lies in it, in samples [start, end)."""

    audio: np.ndarray
    spans: tuple[tuple[int, int], ...]
    sample_rate: int

    def seconds(self, index: int) -> tuple[float, float]:
        """Start and end of part `index` in seconds."""
        start, end = self.spans[index]
        return start / self.sample_rate, end / self.sample_rate


def silence_samples(seconds: float, sample_rate: int) -> int:
    """How many samples `seconds` of silence is: the nearest whole number."""
    return round(seconds * sample_rate)


def join_audio(parts: Sequence[np.ndarray | float], sample_rate: int, fade_seconds: float = FADE_SECONDS) -> Joined:
    """Float32 mono `parts` (arrays of samples, or seconds of silence) one after another; speech fades out and in
    over `fade_seconds` where it meets another part, never at the very start or end."""
    joiner = StreamJoin(sample_rate, len(parts), fade_seconds)
    pieces, spans, position = [], [], 0
    for part in parts:
        if isinstance(part, np.ndarray):
            piece = np.concatenate([joiner.speech(part), joiner.end()])
        else:
            piece = joiner.silence(part)
        pieces.append(piece)
        spans.append((position, position + len(piece)))
        position += len(piece)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Joined(audio, tuple(spans), sample_rate)


class StreamJoin:
    """`join_audio` for parts that come a piece at a time (streamed speech): the same samples out, in order. The
    last fade's worth of a speech part is held back until `end()` says where the part ends."""

    def __init__(self, sample_rate: int, parts: int | None, fade_seconds: float = FADE_SECONDS) -> None:
        """`parts`: how many parts will be joined; None while that is not known (text still coming in): then
        every part's last fade is held back until `end` says whether it is the last."""
        fade = max(int(fade_seconds * sample_rate), 0)
        self.sample_rate, self.parts = sample_rate, parts
        self._ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
        self._index, self._position = 0, 0  # the part being joined, and how many of its samples came so far
        self._held = np.zeros(0, dtype=np.float32)

    def speech(self, samples: np.ndarray) -> np.ndarray:
        """More samples of the current speech part: those that can go out now (faded in where they start it)."""
        piece = np.array(samples, dtype=np.float32, copy=True).reshape(-1)
        if self._index > 0 and self._position < len(self._ramp):
            head = min(len(piece), len(self._ramp) - self._position)
            piece[:head] *= self._ramp[self._position : self._position + head]
        self._position += len(piece)
        waiting = np.concatenate([self._held, piece])
        last = self.parts is not None and self._index == self.parts - 1
        keep = 0 if last else min(len(waiting), len(self._ramp))
        self._held = waiting[len(waiting) - keep :]
        return waiting[: len(waiting) - keep]

    def end(self, last: bool = False) -> np.ndarray:
        """The rest of the current speech part, faded out unless it is the `last` part; the next part starts."""
        tail = self._held
        if len(tail) and not last:
            tail = tail * self._ramp[: len(tail)][::-1]
        self._next()
        return tail

    def silence(self, seconds: float) -> np.ndarray:
        """The next part: `seconds` of silence."""
        if seconds < 0:
            raise ValueError(f"silence of {seconds} s: expected a length >= 0")
        self._next()
        return np.zeros(silence_samples(seconds, self.sample_rate), dtype=np.float32)

    def _next(self) -> None:
        self._index, self._position, self._held = self._index + 1, 0, np.zeros(0, dtype=np.float32)
