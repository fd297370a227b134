"""The Covo-Audio network: Whisper encoder -> audio adapter -> Qwen2 LLM, under the real parameter names."""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen2ForCausalLM
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from voxport.models.covo.config import CovoConfig

ADAPTER_HIDDEN = 2048


class DownsampleLayer(nn.Module):
    """Halve the frame rate: strided conv over time, then a two-layer MLP (ReLU between, no norm)."""

    def __init__(self, channels: int, out_features: int):
        super().__init__()
        self.conv1d = nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1)
        self.linear1 = nn.Linear(channels, ADAPTER_HIDDEN)
        self.linear2 = nn.Linear(ADAPTER_HIDDEN, out_features)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # [batch, time, channels]
        halved = self.conv1d(frames.transpose(1, 2)).transpose(1, 2)
        return self.linear2(torch.relu(self.linear1(torch.relu(halved))))


class AudioAdapter(nn.Module):
    """log2(downsample) halvings; only the last one projects to the LLM width."""

    def __init__(self, in_features: int, out_features: int, downsample: int):
        super().__init__()
        steps = downsample.bit_length() - 1
        if downsample < 2 or 2**steps != downsample:
            raise ValueError(f"adapter_downsample must be a power of two, got {downsample}")
        self.downsample_layers = nn.ModuleList(
            DownsampleLayer(in_features, out_features if step == steps - 1 else in_features) for step in range(steps)
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        for layer in self.downsample_layers:
            frames = layer(frames)
        return frames


class CovoAudioNetwork(nn.Module):
    def __init__(self, config: CovoConfig):
        super().__init__()
        for sub_config in (config.llm, config.encoder):
            sub_config._attn_implementation = "sdpa"
        self.llm = Qwen2ForCausalLM(config.llm)
        self.encoder = WhisperEncoder(config.encoder)
        self.audio_adapter = AudioAdapter(config.whisper_feats_dim, config.llm.hidden_size, config.adapter_downsample)

    def encode_audio(self, mels: torch.Tensor) -> torch.Tensor:
        """Log-mels [segments, mels, 3000] -> LLM-width features [segments * frames, hidden], in time order."""
        dtype = self.encoder.conv1.weight.dtype
        encoded = self.encoder(mels.to(dtype)).last_hidden_state
        return self.audio_adapter(encoded).flatten(0, 1)
