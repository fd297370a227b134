"""Covo-Audio's audio front end: a clip becomes N placeholder slots and 16 kHz segments for the encoder.

The reference's rules: mono 24 kHz, trimmed to whole 10 ms hops (240 samples), zero-padded to a multiple of
480; N = four ceil-halvings of the 100 Hz frame count (6.25 features a second); clips over 30 s are cut
into 30 s segments, each resampled to 16 kHz for Whisper.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch

from voxport.audio.features import SAMPLE_RATE as WHISPER_RATE
from voxport.audio.features import whisper_log_mel
from voxport.audio.io import check_samples, load_audio
from voxport.audio.segments import ceil_halvings, split_segments, trim_and_pad

INPUT_RATE = 24000
HOP = INPUT_RATE // 100
PAD_MULTIPLE = 480
SEGMENT_SAMPLES = 30 * INPUT_RATE
FEATURE_HALVINGS = 4


@dataclass(frozen=True)
class SpeechClip:
    """One user turn, ready for the encoder."""

    source: str
    samples: np.ndarray  # 24 kHz, trimmed and padded
    placeholders: int  # N: audio features the prompt makes room for
    segments: tuple[np.ndarray, ...]  # 16 kHz, at most 30 s each

    @property
    def seconds(self) -> float:
        return len(self.samples) / INPUT_RATE


def prepare_clip(audio: str | Path | np.ndarray) -> SpeechClip:
    """A file (any format soundfile reads) or 24 kHz mono samples -> a clip the chat can take."""
    source = str(audio) if not isinstance(audio, np.ndarray) else "<samples>"
    samples = (
        load_audio(audio, INPUT_RATE)
        if not isinstance(audio, np.ndarray)
        else check_samples(audio, INPUT_RATE, "audio samples")
    )
    shaped = trim_and_pad(samples, HOP, PAD_MULTIPLE)
    placeholders = ceil_halvings(len(shaped) * 100 // INPUT_RATE, FEATURE_HALVINGS)
    segments = tuple(
        soxr.resample(segment, INPUT_RATE, WHISPER_RATE, quality="HQ").astype(np.float32)
        for segment in split_segments(shaped, SEGMENT_SAMPLES)
    )
    return SpeechClip(source, shaped, placeholders, segments)


def clip_log_mels(clip: SpeechClip, n_mels: int, device: torch.device) -> torch.Tensor:
    """[segments, n_mels, 3000] float32 log-mels on `device`."""
    return torch.stack([whisper_log_mel(segment, n_mels=n_mels, device=device) for segment in clip.segments])
