"""Faster or slower speech at the same pitch: librosa's phase-vocoder time stretch (resampling would shift the
pitch with the tempo)."""

from __future__ import annotations

import numpy as np

MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range for `speed`


def change_speed(audio: np.ndarray, speed: float) -> np.ndarray:
    """Float32 mono audio played `speed` times as fast (about len / speed samples), pitch kept."""
    if speed == 1.0 or len(audio) == 0:
        return audio
    import librosa  # imported here: it takes a second and only speed changes need it

    n_fft = 2048 if len(audio) >= 2048 else 256  # short pieces: a window that fits them
    stretched = librosa.effects.time_stretch(np.ascontiguousarray(audio, dtype=np.float32), rate=speed, n_fft=n_fft)
    return stretched.astype(np.float32, copy=False)
