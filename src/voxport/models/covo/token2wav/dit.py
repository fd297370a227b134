"""token2latent: a flow-matching DiT that turns 25 Hz audio codes into 100 Hz latents, under the released names.

Codes are embedded and upsampled x4; each transformer block is conditioned (adaLN shift/scale/gate) on the
flow time and the speaker embedding. Attention is plain SDPA with rotary positions computed in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from voxport.models.covo.token2wav.config import Token2LatentConfig

ROTARY_THETA = 50000.0
TIME_FEATURES = 256


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Rotary(nn.Module):
    def __init__(self, head_dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / ROTARY_THETA ** (torch.arange(0, head_dim, 2).float() / head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate [batch, heads, time, head_dim] by position (rotate-half layout), in float32."""
        positions = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq.float())
        angles = torch.cat([angles, angles], dim=-1)
        first, second = x.float().chunk(2, dim=-1)
        rotated = x.float() * angles.cos() + torch.cat([-second, first], dim=-1) * angles.sin()
        return rotated.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=False)
        self.o_proj = nn.Linear(hidden, hidden)
        self.rotary = Rotary(hidden // heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, hidden = x.shape

        def split(projection):
            return projection(x).view(batch, time, self.heads, -1).transpose(1, 2)

        q, k, v = self.rotary(split(self.q_proj)), self.rotary(split(self.k_proj)), split(self.v_proj)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(batch, time, hidden))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, config: Token2LatentConfig):
        super().__init__()
        hidden = config.hidden_size
        self.attn = Attention(hidden, config.num_heads)
        self.ffn = FeedForward(hidden, config.ffn_hidden_size)
        self.modulation_layer = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.modulation_layer(condition).chunk(6, dim=1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(_normalize(x), shift_a, scale_a))
        return x + gate_f.unsqueeze(1) * self.ffn(modulate(_normalize(x), shift_f, scale_f))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_features: int):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(condition).chunk(2, dim=1)
        return self.linear(modulate(_normalize(x), shift, scale))


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIME_FEATURES, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        half = TIME_FEATURES // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=times.device) / half)
        angles = times.float()[:, None] * frequencies[None]
        features = torch.cat([angles.cos(), angles.sin()], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class ConvPositionEmbed(nn.Module):
    def __init__(self, hidden: int, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        self.conv = nn.Conv1d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, time, hidden]
        return F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)


class Token2Latent(nn.Module):
    def __init__(self, config: Token2LatentConfig):
        super().__init__()
        hidden, factor = config.hidden_size, config.upsample_factor
        self.config = config
        self.token_embedding = nn.Embedding(config.token_vocab_size, config.token_input_dim)
        self.token_proj = nn.Sequential(
            nn.Linear(config.token_input_dim, hidden),
            nn.ConvTranspose1d(hidden, hidden, kernel_size=2 * factor, stride=factor, padding=factor // 2),
        )
        self.cond_proj = nn.Linear(hidden + config.spkr_embed_dim, hidden)
        self.transformer_input_proj = nn.Linear(hidden + 2 * config.z_dim, hidden)
        self.time_embedder = TimestepEmbedder(hidden)
        self.conv_embed = ConvPositionEmbed(hidden)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.num_layers))
        self.output_layer = FinalLayer(hidden, config.z_dim)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [batch, tokens] -> conditioning frames [batch, tokens x upsample_factor, hidden]."""
        projected = self.token_proj[0](self.token_embedding(codes))
        return self.token_proj[1](projected.transpose(1, 2)).transpose(1, 2)

    def velocity(self, tokens, prefix, state, times, speaker) -> torch.Tensor:
        """The flow's velocity at `times` for `state`, given token frames, the latent prefix and the speaker."""
        condition = self.cond_proj(torch.cat([self.time_embedder(times), speaker], dim=-1))
        x = self.transformer_input_proj(torch.cat([tokens, prefix, state], dim=-1))
        x = self.conv_embed(x) + x
        for block in self.blocks:
            x = block(x, condition)
        return self.output_layer(x, condition)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters (the modulation supplies scale and shift)."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)
