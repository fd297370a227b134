"""A Llama-style decoder stack over a static, preallocated KV cache, in the style of gpt-fast.

The loaded transformers modules supply the weights and the per-layer maths (norms, MLPs, projections);
attention runs here over caches allocated once, so a decoding step is a fixed sequence of kernels that
torch.compile (and CUDA graphs) can capture whole. Used by CSM's backbone and depth decoder and by
Covo-Audio's Qwen2 LLM.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from voxport.runtime.devices import backend_for
from voxport.runtime.streaming import held, streamed_unit


def _rms_norm_as_transformers(x: torch.Tensor, shape: tuple[int], weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' RMSNorm for half dtypes: float32 statistics, then the weight applied in the input dtype."""
    return weight * F.rms_norm(x.float(), shape, eps=eps).to(x.dtype)


def rms_norm_for(dtype: torch.dtype):
    """In float32 the fused op computes exactly what transformers does; in half dtypes the order matters."""
    return F.rms_norm if dtype == torch.float32 else _rms_norm_as_transformers


def fuse_projections(decoder: nn.Module) -> None:
    """Store each layer's q/k/v and gate/up weights (and biases, as Qwen2's q/k/v have) as views of one
    tensor, so each group is one matmul.

    The modules keep working as before (their weights are views of the fused tensor): no extra memory.
    Built outside inference mode, so the model stays usable wherever it was before. Layers whose weights
    stream from the checkpoint (runtime.streaming) are fused as each is read instead (see `CachedStack`).
    """
    if streamed_unit(decoder.layers[0]) is not None:
        return
    with torch.inference_mode(False), torch.no_grad():
        _fuse(decoder)


def _fuse(decoder: nn.Module) -> None:
    for layer in decoder.layers:
        for owner, names, fused_name in (
            (layer.self_attn, ("q_proj", "k_proj", "v_proj"), "qkv_fused"),
            (layer.mlp, ("gate_proj", "up_proj"), "gate_up_fused"),
        ):
            if hasattr(owner, fused_name):
                continue
            linears = [getattr(owner, name) for name in names]
            biased = [linear.bias is not None for linear in linears]
            if any(biased) and not all(biased):
                raise ValueError(f"{', '.join(names)} mix biased and bias-free projections: cannot fuse them")
            owner.register_buffer(fused_name, _fused_views(linears, "weight"), persistent=False)
            owner.register_buffer(
                fused_name + "_bias", _fused_views(linears, "bias") if all(biased) else None, persistent=False
            )


def _fused_views(linears: list[nn.Linear], name: str) -> torch.Tensor:
    """One tensor holding every linear's `name` parameter, which each linear then keeps as a view."""
    fused = torch.cat([getattr(linear, name).detach() for linear in linears])
    start = 0
    for linear in linears:
        rows = getattr(linear, name).shape[0]
        setattr(linear, name, nn.Parameter(fused[start : start + rows], requires_grad=False))
        start += rows
    return fused


def _layer_weights(layer: nn.Module) -> tuple:
    """What the stack reads of one fused layer, in the order `CachedStack.__call__` unpacks it."""
    return (
        layer.input_layernorm.weight,
        layer.self_attn.qkv_fused,
        layer.self_attn.qkv_fused_bias,
        layer.self_attn.o_proj.weight,
        layer.post_attention_layernorm.weight,
        layer.mlp.gate_up_fused,
        layer.mlp.down_proj.weight,
        layer.mlp.act_fn.forward,  # the activation's maths without a module call around it
    )


class StackCall(NamedTuple):
    """One call of a `CachedStack`: its arguments, kept to run later (see `CachedStack.layer_major`)."""

    x: torch.Tensor
    rope: tuple[torch.Tensor, torch.Tensor]
    slots: torch.Tensor
    mask: torch.Tensor | None
    visible: int | None = None


class StreamedLayers:
    """A stack's layers whose weights stream from the checkpoint (runtime.streaming): each is read as the loop
    reaches it and its q/k/v and gate/up fused once while it stays held."""

    def __init__(self, layers: nn.ModuleList):
        self.modules = list(layers)

    def __len__(self) -> int:
        return len(self.modules)

    def __iter__(self):
        for layer in self.modules:
            with held(layer) as memo:
                if "stack" not in memo:  # fused as at load: the projections become views, no extra memory
                    attention, mlp = layer.self_attn, layer.mlp
                    projections = [attention.q_proj, attention.k_proj, attention.v_proj]
                    with torch.no_grad():
                        memo["stack"] = (
                            layer.input_layernorm.weight,
                            _fused_views(projections, "weight"),
                            _fused_views(projections, "bias") if all(p.bias is not None for p in projections) else None,
                            attention.o_proj.weight,
                            layer.post_attention_layernorm.weight,
                            _fused_views([mlp.gate_proj, mlp.up_proj], "weight"),
                            mlp.down_proj.weight,
                            mlp.act_fn.forward,
                        )
                yield memo["stack"]


class CachedStack:
    """A decoder stack (CSM's backbone or depth decoder, Covo's Qwen2) over a static KV cache.

    `slots` are cache rows to write, `rope` the rotary tables of the inputs' positions (per row, so left-padded
    batch rows see the positions they would alone, see `rope()`), `mask` [batch, 1, queries, keys] which cache
    rows each query sees; `visible` limits attention to the first `visible` cache rows (the mask then covers
    just those), and without a mask those rows are attended causally (the depth decoder's fixed-size steps).
    Weights are used directly (q/k/v and gate/up fused) through the device's fastest linear kernel
    (`DeviceBackend.linear_kernel`), the maths kept identical to transformers'.
    """

    def __init__(self, decoder: nn.Module, batch: int, length: int, grouped_attention: bool):
        config = decoder.config
        if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
            raise ValueError(
                "the static-cache stack attends over every cached position: sliding-window layers are not supported"
            )
        fuse_projections(decoder)
        attention = decoder.layers[0].self_attn
        self.head_dim, self.scaling = attention.head_dim, attention.scaling
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.groups = attention.num_key_value_groups
        self.grouped_attention = grouped_attention
        self.eps = decoder.norm.variance_epsilon
        self.rotary = decoder.rotary_emb
        streamed = streamed_unit(decoder.layers[0]) is not None
        self.layers: list[tuple] | StreamedLayers = (
            StreamedLayers(decoder.layers) if streamed else [_layer_weights(layer) for layer in decoder.layers]
        )
        if any(
            linear.bias is not None
            for layer in decoder.layers
            for linear in (layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)
        ):
            raise ValueError("the stack expects bias-free output and MLP projections, as in Llama and Qwen2")
        self.norm = decoder.norm.weight
        weight = self.norm
        self.rms_norm, self.norm_shape = rms_norm_for(weight.dtype), (weight.shape[0],)
        self.linear = backend_for(weight.device).linear_kernel(weight.dtype)
        self.batch, self.length = batch, 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.grow(length)

    def grow(self, length: int) -> None:
        """Cache room for `length` positions, keeping what the cache holds (a new allocation and a copy)."""
        weight = self.norm
        shape = (self.batch, self.kv_heads, length, self.head_dim)
        for caches in (self.keys, self.values):
            for index in range(len(self.layers)):
                cache = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
                if index < len(caches):
                    cache[:, :, : self.length] = caches[index]
                    caches[index] = cache
                else:
                    caches.append(cache)
        self.length = length
        positions = torch.arange(length, device=weight.device).unsqueeze(0)
        cos, sin = self.rotary(torch.zeros(1, dtype=weight.dtype, device=weight.device), positions)
        half = self.head_dim // 2
        # rotate_half(x) * sin == roll(x, half) * (sin with its first half negated): one kernel fewer.
        self.cos, self.sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)
        self.cache_index = torch.arange(length, device=weight.device)

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary (cos, sin) for positions [batch, T], shaped to broadcast over heads: [batch, 1, T, head_dim]."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)

    def __call__(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        slots: torch.Tensor,
        mask: torch.Tensor | None,
        visible: int | None = None,
    ):
        for index, weights in enumerate(self.layers):
            x = self.layer(index, weights, x, rope, slots, mask, visible)
        return self.rms_norm(x, self.norm_shape, self.norm, self.eps)

    def layer_major(self, calls: list[StackCall]) -> list[torch.Tensor]:
        """The outputs of `calls` made one after another, computed a layer at a time: each layer runs every call
        (in order, so each sees the cache rows the earlier ones wrote, as when called in turn) before the next
        layer is reached. Where layers stream from the checkpoint, each is read once for all the calls."""
        hidden = [call.x for call in calls]
        for index, weights in enumerate(self.layers):
            hidden = [
                self.layer(index, weights, x, call.rope, call.slots, call.mask, call.visible)
                for x, call in zip(hidden, calls)
            ]
        return [self.rms_norm(x, self.norm_shape, self.norm, self.eps) for x in hidden]

    def layer(
        self,
        index: int,
        weights: tuple,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        slots: torch.Tensor,
        mask: torch.Tensor | None,
        visible: int | None,
    ) -> torch.Tensor:
        """Layer `index` (its `weights` as `_layer_weights` orders them) on `x`, its keys and values written to
        cache rows `slots`."""
        norm1, qkv, qkv_bias, out, norm2, gate_up, down, act = weights
        cos, sin = rope
        batch, length, _ = x.shape
        half = self.head_dim // 2
        heads = self.linear(self.rms_norm(x, self.norm_shape, norm1, self.eps), qkv, qkv_bias)
        # One query: [batch, 1, heads x dim] already is [batch, heads, 1, dim] in memory, no transpose.
        heads = (
            heads.view(batch, -1, 1, self.head_dim)
            if length == 1
            else heads.view(batch, length, -1, self.head_dim).transpose(1, 2)
        )
        query_key, value = heads.split((self.heads + self.kv_heads, self.kv_heads), dim=1)
        query_key = query_key * cos + query_key.roll(half, dims=-1) * sin
        query, key = query_key.split((self.heads, self.kv_heads), dim=1)
        keys, values = self.keys[index], self.values[index]
        keys.index_copy_(2, slots, key)
        values.index_copy_(2, slots, value)
        if visible is not None:
            keys, values = keys[:, :, :visible], values[:, :, :visible]
        if not self.grouped_attention:
            keys, values = keys.repeat_interleave(self.groups, 1), values.repeat_interleave(self.groups, 1)
        attended = F.scaled_dot_product_attention(
            query,
            keys,
            values,
            attn_mask=mask,
            scale=self.scaling,
            is_causal=mask is None and length > 1,
            enable_gqa=self.grouped_attention,
        )
        attended = attended.view(batch, 1, -1) if length == 1 else attended.transpose(1, 2).reshape(batch, length, -1)
        x = x + self.linear(attended, out)
        gate, up = self.linear(self.rms_norm(x, self.norm_shape, norm2, self.eps), gate_up).chunk(2, dim=-1)
        return x + self.linear(act(gate) * up, down)
