"""Whisper's log-mel features on any device, with the fixes ports need built in.

Float32 STFT (NPUs reject others) and power as real^2 + imag^2 (no complex abs, which NPUs lack).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # Whisper always sees 30 s: 3000 frames


def whisper_log_mel(audio: np.ndarray | torch.Tensor, n_mels: int = 128, device=None) -> torch.Tensor:
    """16 kHz mono -> (n_mels, 3000) float32: pad/trim to 30 s, |STFT|^2, mel, log10, clamp to max-8, rescale."""
    samples = torch.as_tensor(audio, dtype=torch.float32)
    if device is not None:
        samples = samples.to(device)
    samples = _pad_or_trim(samples, CHUNK_SAMPLES)
    window = torch.hann_window(N_FFT, dtype=torch.float32, device=samples.device)
    spectrum = torch.view_as_real(torch.stft(samples, N_FFT, HOP_LENGTH, window=window, return_complex=True))
    power = spectrum.pow(2).sum(-1)[..., :-1]
    mel = mel_filters(n_mels).to(samples.device) @ power
    log_mel = torch.clamp(mel, min=1e-10).log10()
    log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> torch.Tensor:
    """(n_mels, 201) Slaney-scale, Slaney-normalised triangles: the filters librosa (and Whisper) use."""
    bank = mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=SAMPLE_RATE / 2,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(bank.T.astype(np.float32))


def _pad_or_trim(samples: torch.Tensor, length: int) -> torch.Tensor:
    if samples.shape[-1] >= length:
        return samples[..., :length]
    return torch.nn.functional.pad(samples, (0, length - samples.shape[-1]))
