"""Mimi decoding a stream of frames chunk by chunk, its state kept between chunks, so every chunk costs the
same however long the stream has run (re-decoding history would cost more with each chunk).

transformers' Mimi modules do the maths; the state is what one-shot decoding would have seen: the decoder
transformer's KV cache (a sliding-window `DynamicCache`), each causal convolution's last inputs (the
library's `MimiConv1dPaddingCache`), and each transposed convolution's output tail that the next chunk's
first samples overlap (moshi's streaming transposed convolution does the same).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import DynamicCache
from transformers.models.mimi.modeling_mimi import (
    MimiConv1d,
    MimiConv1dPaddingCache,
    MimiConvTranspose1d,
    MimiModel,
    MimiResnetBlock,
)


class MimiDecodeStream:
    """One stream's decoder state. `decode(codes)` of consecutive chunks joins into decoding them at once."""

    def __init__(self, codec: MimiModel):
        self.codec = codec
        decoder = codec.decoder
        self.transformer, self.seanet = decoder.decoder_transformer, decoder.decoder_seanet
        self.upsample = decoder.upsample
        convolutions = [module for module in self.seanet.modules() if isinstance(module, MimiConv1d)]
        if not all(conv.causal for conv in convolutions) or decoder.config.trim_right_ratio != 1.0:
            raise ValueError("streaming decoding needs Mimi's causal convolutions, trimmed wholly on the right")
        for index, conv in enumerate(convolutions):
            conv.layer_idx = index  # where the padding cache keeps this layer's inputs (as Mimi's encoder does)
        self.padding = MimiConv1dPaddingCache(
            num_layers=len(convolutions),
            per_layer_padding=[conv.padding_total for conv in convolutions],
            per_layer_padding_mode=[conv.pad_mode for conv in convolutions],
            per_layer_in_channels=[conv.in_channels for conv in convolutions],
        )
        self.attention = DynamicCache(config=self.transformer.config)
        self.steps = 0  # transformer positions decoded so far
        self.tails: dict[nn.Module, torch.Tensor] = {}

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [batch, codebooks, frames] -> the next audio [batch, channels, frames x samples per frame]."""
        latents = self.codec.quantizer.decode(codes)
        hidden = latents if self.upsample is None else self._transposed(self.upsample, latents)
        positions = torch.arange(self.steps, self.steps + hidden.shape[-1], device=hidden.device).unsqueeze(0)
        hidden = self.transformer(
            hidden.transpose(1, 2), position_ids=positions, cache=self.attention, use_cache=True
        ).last_hidden_state.transpose(1, 2)
        self.steps += hidden.shape[-1]
        for layer in self.seanet.layers:
            if isinstance(layer, MimiConvTranspose1d):
                hidden = self._transposed(layer, hidden)
            elif isinstance(layer, (MimiConv1d, MimiResnetBlock)):
                hidden = layer(hidden, padding_cache=self.padding)
            else:
                hidden = layer(hidden)
        return hidden

    def _transposed(self, layer: MimiConvTranspose1d, hidden: torch.Tensor) -> torch.Tensor:
        """The chunk's share of a causal transposed convolution: its output's last (kernel - stride) samples
        also depend on the next chunk, so they wait (less the bias, which the next chunk adds) for it."""
        out = layer.conv(hidden)
        overlap = layer.padding_right
        tail = self.tails.get(layer)
        if tail is not None:
            out[..., :overlap] += tail
        pending = out[..., out.shape[-1] - overlap :]
        if layer.conv.bias is not None:
            pending = pending - layer.conv.bias[:, None]
        self.tails[layer] = pending
        return out[..., : out.shape[-1] - overlap]
