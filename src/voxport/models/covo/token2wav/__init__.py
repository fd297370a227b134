"""Covo-Audio's speech decoder: audio codes -> 64-d latents (flow-matching DiT) -> 24 kHz waveform (BigVGAN)."""

from voxport.models.covo.token2wav.config import Token2WavConfig
from voxport.models.covo.token2wav.decoder import SpeakerPrompt, Token2Wav

__all__ = ["SpeakerPrompt", "Token2Wav", "Token2WavConfig"]
