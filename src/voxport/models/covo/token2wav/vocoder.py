"""BigVGAN vocoder, causal: 100 Hz latents -> 24 kHz waveform (x240), under the released weights' names.

Weight norm is kept in its old stored form (weight_g, weight_v) and applied in plain tensor ops, so no
device needs the fused weight-norm kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from voxport.models.covo.token2wav.config import VocoderConfig


class WeightNormConv1d(nn.Module):
    """Conv1d whose weight is g * v / |v| (norm over all but the output dim); causal pads on the left only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, causal: bool = True):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(out_channels, 1, 1))
        self.weight_v = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size) * 0.01)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        span = dilation * (kernel_size - 1)
        self.padding = (span, 0) if causal else (span // 2, span - span // 2)
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(1, 2), keepdim=True))
        return F.conv1d(F.pad(x, self.padding), weight, self.bias, dilation=self.dilation)


class WeightNormCausalUpsample(nn.Module):
    """ConvTranspose1d with kernel 2 x stride, the last `stride` samples dropped: exactly x`stride` longer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        if kernel_size != 2 * stride:
            raise ValueError(f"causal upsampling needs kernel = 2 x stride, got {kernel_size} and {stride}")
        self.weight_g = nn.Parameter(torch.ones(in_channels, 1, 1))
        self.weight_v = nn.Parameter(torch.randn(in_channels, out_channels, kernel_size) * 0.01)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(1, 2), keepdim=True))
        return F.conv_transpose1d(x, weight, self.bias, stride=self.stride)[..., : -self.stride]


def kaiser_lowpass(cutoff: float, half_width: float, taps: int) -> torch.Tensor:
    """[1, 1, taps] Kaiser-windowed sinc low-pass, unit DC gain (even `taps`: centred between samples)."""
    attenuation = 2.285 * (taps // 2 - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    else:
        beta = 0.0
    window = torch.kaiser_window(taps, periodic=False, beta=beta)
    time = torch.arange(-(taps // 2), taps - taps // 2) + (0.5 if taps % 2 == 0 else 0.0)
    kernel = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (kernel / kernel.sum()).view(1, 1, taps)


class HalfBandFilter(nn.Module):
    """The 12-tap Kaiser low-pass at a quarter of the rate that both resamplers around a snake use."""

    TAPS = 12

    def __init__(self):
        super().__init__()
        self.register_buffer("filter", kaiser_lowpass(0.25, 0.3, self.TAPS))

    def taps_for(self, x: torch.Tensor) -> torch.Tensor:
        return self.filter.expand(x.shape[1], -1, -1)  # one filter per channel (grouped convolution)


class Upsample2x(HalfBandFilter):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        edge = self.TAPS // 2 - 1
        trim = edge * 2 + (self.TAPS - 2) // 2
        x = F.pad(x, (edge, edge), mode="replicate")
        x = 2 * F.conv_transpose1d(x, self.taps_for(x), stride=2, groups=x.shape[1])
        return x[..., trim:-trim]


class LowPassDownsample2x(HalfBandFilter):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.TAPS // 2 - 1, self.TAPS // 2), mode="replicate")
        return F.conv1d(x, self.taps_for(x), stride=2, groups=x.shape[1])


class Downsample2x(nn.Module):
    """Named as in the released weights: the filter lives at downsample.lowpass.filter."""

    def __init__(self):
        super().__init__()
        self.lowpass = LowPassDownsample2x()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class SnakeBeta(nn.Module):
    """x + sin^2(alpha x) / beta, per channel, alpha and beta stored as logs."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.alpha.exp()[None, :, None], self.beta.exp()[None, :, None]
        return x + torch.sin(x * alpha).pow(2) / (beta + 1e-9)


class AntiAliasedSnake(nn.Module):
    """SnakeBeta at twice the rate, so its harmonics are filtered before they alias."""

    def __init__(self, channels: int):
        super().__init__()
        self.upsample = Upsample2x()
        self.act = SnakeBeta(channels)
        self.downsample = Downsample2x()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


class AmpBlock(nn.Module):
    """Three residual pairs: (snake, dilated conv, snake, conv)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(WeightNormConv1d(channels, channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(WeightNormConv1d(channels, channels, kernel_size) for _ in dilations)
        self.activations = nn.ModuleList(AntiAliasedSnake(channels) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, (first, second) in enumerate(zip(self.convs1, self.convs2)):
            residual = self.activations[2 * index](x)
            residual = second(self.activations[2 * index + 1](first(residual)))
            x = x + residual
        return x


class BigVGAN(nn.Module):
    def __init__(self, config: VocoderConfig):
        super().__init__()
        channels = config.upsample_initial_channel
        self.conv_pre = WeightNormConv1d(config.latent_dim, channels, 7, causal=False)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for stage, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
            wide, narrow = channels // 2**stage, channels // 2 ** (stage + 1)
            self.ups.append(nn.ModuleList([WeightNormCausalUpsample(wide, narrow, kernel, rate)]))
            self.resblocks.extend(
                AmpBlock(narrow, k, d) for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)
            )
        self.blocks_per_stage = len(config.resblock_kernel_sizes)
        self.activation_post = AntiAliasedSnake(narrow)
        self.conv_post = WeightNormConv1d(narrow, 1, 7)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """[batch, latent_dim, frames] -> [batch, 1, frames x prod(upsample_rates)] in [-1, 1]."""
        x = self.conv_pre(latents)
        for stage, (upsample,) in enumerate(self.ups):
            x = upsample(x)
            blocks = self.resblocks[stage * self.blocks_per_stage : (stage + 1) * self.blocks_per_stage]
            x = sum(block(x) for block in blocks) / self.blocks_per_stage
        return torch.tanh(self.conv_post(self.activation_post(x)))
