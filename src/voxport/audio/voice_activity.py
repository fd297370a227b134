"""Where speech starts and stops in audio that arrives a piece at a time: Silero VAD, a small voice-activity
model that installs from PyPI with its weights inside the wheel (`pip install voxport[realtime]`), run on the
CPU. Live sessions use it for server-side turn detection."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch

from voxport.audio.io import resample
from voxport.errors import InputError

VAD_RATE = 16000  # the rate Silero VAD hears
_WINDOW = 512  # samples per Silero VAD step at 16 kHz (32 ms)


def vad_available() -> bool:
    """Whether the silero-vad package is installed (it is an optional extra)."""
    return importlib.util.find_spec("silero_vad") is not None


@dataclass(frozen=True)
class SpeechEdge:
    """Speech started (`started` True) or stopped, at `ms` milliseconds from the start of the audio fed."""

    started: bool
    ms: int


class SpeechDetector:
    """Feed samples as they come; hear back where speech started and stopped (a stop needs `silence_ms` of
    silence after it; each edge is padded by `padding_ms`, as the model's own iterator does). Loading takes a
    moment: build it off the event loop."""

    def __init__(self, threshold: float, silence_ms: int, padding_ms: int):
        try:
            from silero_vad import VADIterator, load_silero_vad
        except ImportError:
            raise InputError(
                "server_vad needs the silero-vad package: pip install 'voxport[realtime]', or set "
                "turn_detection to null and commit turns yourself"
            ) from None
        self._vad = VADIterator(
            load_silero_vad(),
            threshold=threshold,
            sampling_rate=VAD_RATE,
            min_silence_duration_ms=silence_ms,
            speech_pad_ms=padding_ms,
        )
        self._pending = np.zeros(0, np.float32)

    def feed(self, samples: np.ndarray, rate: int) -> list[SpeechEdge]:
        """The edges found in `samples` (mono float32 at `rate`), with those of the audio fed before."""
        self._pending = np.concatenate([self._pending, resample(samples, rate, VAD_RATE)])
        edges = []
        while len(self._pending) >= _WINDOW:
            window, self._pending = self._pending[:_WINDOW], self._pending[_WINDOW:]
            with torch.inference_mode():
                found = self._vad(torch.from_numpy(np.ascontiguousarray(window)))
            if found:
                started = "start" in found
                edges.append(SpeechEdge(started, int(found["start" if started else "end"]) * 1000 // VAD_RATE))
        return edges
