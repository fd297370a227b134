"""Shaping a waveform for a model's front end: trim to whole hops, pad to a multiple, cut into segments."""

from __future__ import annotations

import numpy as np


def trim_and_pad(samples: np.ndarray, hop: int, multiple: int) -> np.ndarray:
    """Drop the trailing partial hop, then zero-pad the end to a multiple of `multiple` samples."""
    trimmed = samples[: len(samples) // hop * hop]
    padding = -len(trimmed) % multiple
    return np.pad(trimmed, (0, padding)) if padding else trimmed


def split_segments(samples: np.ndarray, length: int) -> list[np.ndarray]:
    """Consecutive pieces of at most `length` samples (the last one may be shorter)."""
    return [samples[start : start + length] for start in range(0, len(samples), length)]


def ceil_halvings(count: int, times: int) -> int:
    """`count` after `times` stride-2 steps that keep a partial last step (ceil division by 2 each time)."""
    for _ in range(times):
        count = (count + 1) // 2
    return count
