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
    fade = max(int(fade_seconds * sample_rate), 0)
    pieces, spans, position = [], [], 0
    for index, part in enumerate(parts):
        if isinstance(part, np.ndarray):
            piece = np.array(part, dtype=np.float32, copy=True).reshape(-1)
            _fade(piece, fade, start=index > 0, end=index < len(parts) - 1)
        else:
            if part < 0:
                raise ValueError(f"silence of {part} s: expected a length >= 0")
            piece = np.zeros(silence_samples(part, sample_rate), dtype=np.float32)
        pieces.append(piece)
        spans.append((position, position + len(piece)))
        position += len(piece)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Joined(audio, tuple(spans), sample_rate)


def _fade(piece: np.ndarray, length: int, start: bool, end: bool) -> None:
    """A raised-cosine fade in at the start and/or out at the end, in place (at most half the piece each)."""
    length = min(length, len(piece) // 2)
    if length == 0:
        return
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)).astype(np.float32)
    if start:
        piece[:length] *= ramp
    if end:
        piece[-length:] *= ramp[::-1]
