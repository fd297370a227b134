"""Recording what every block of the reference receives and returns, and replaying a block alone elsewhere.

The reference runs each stage (models/base.Stage) once with forward hooks on the stage's blocks: every call's
arguments and output are kept on the host. Any other model of the family then runs a block alone, fed with
the reference's arguments (floating ones cast to the block's own dtype), so its error is its own and not the
sum of everything upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map
from transformers.cache_utils import Cache

from voxport.models.base import Stage


@dataclass
class Call:
    args: tuple
    kwargs: dict
    output: torch.Tensor  # host copy, in the dtype the block made it


@dataclass
class StageRecord:
    name: str
    inputs: Any  # the reference's inputs of the stage (host)
    run: Callable
    output: torch.Tensor  # the reference's output of the stage (host)
    calls: dict[str, list[Call]]  # block -> its calls; blocks in the order they were first entered


def host(value):
    """A detached host copy of every tensor in `value`; caches become None (a replayed block starts without one)."""

    def copy(leaf):
        if isinstance(leaf, torch.Tensor):
            return leaf.detach().to("cpu", copy=True)
        return None if isinstance(leaf, Cache) else leaf

    return tree_map(copy, value)


def first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    for field in ("last_hidden_state", "logits", "audio_values"):
        if isinstance(getattr(output, field, None), torch.Tensor):
            return getattr(output, field)
    return None


def run_stage(model, run: Callable, inputs) -> torch.Tensor:
    """A stage on `model`, its inputs moved to the model's device (each stage casts them as the real job does)."""
    moved = tree_map(lambda leaf: leaf.to(model.device) if isinstance(leaf, torch.Tensor) else leaf, inputs)
    with torch.no_grad():
        output = first_tensor(run(model, moved))
    if output is None:
        raise ValueError("the stage returned no tensor")
    return host(output)


def record_stage(model, stage: Stage) -> StageRecord:
    """Run `stage` on the reference `model`, keeping every call of its blocks."""
    modules = dict(model.named_modules())
    calls: dict[str, list[Call]] = {}
    pending: dict[str, list] = {}

    def before(name):
        def hook(module, args, kwargs):
            calls.setdefault(name, [])
            pending.setdefault(name, []).append((host(args), host(kwargs)))

        return hook

    def after(name):
        def hook(module, args, kwargs, output):
            recorded_args, recorded_kwargs = pending[name].pop()
            tensor = first_tensor(output)
            if tensor is not None:
                calls[name].append(Call(recorded_args, recorded_kwargs, host(tensor)))

        return hook

    handles = []
    for name in stage.blocks:
        module = modules.get(name)
        if module is None:
            raise ValueError(f"stage {stage.name} names block {name}, which the model does not have")
        handles += [
            module.register_forward_pre_hook(before(name), with_kwargs=True),
            module.register_forward_hook(after(name), with_kwargs=True),
        ]
    try:
        output = run_stage(model, stage.run, stage.inputs)
    finally:
        for handle in handles:
            handle.remove()
    return StageRecord(
        stage.name, stage.inputs, stage.run, output, {name: entries for name, entries in calls.items() if entries}
    )


def block_dtype(module: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype a block computes in: its first floating parameter's (the codec and vocoder stay float32)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), default)


def prepared_call(model, name: str, call: Call) -> tuple[nn.Module, tuple, dict]:
    """Block `name` of `model` and the reference's arguments of `call` on its device, floats in its dtype."""
    module = dict(model.named_modules())[name]
    dtype = block_dtype(module, model.dtype)

    def convert(leaf):
        if isinstance(leaf, torch.Tensor):
            return leaf.to(model.device, dtype if leaf.is_floating_point() else leaf.dtype)
        return leaf

    return module, tree_map(convert, call.args), tree_map(convert, call.kwargs)


def replay_call(model, name: str, call: Call) -> torch.Tensor:
    """Block `name` of `model` alone on the reference's arguments of one call; its output on the host."""
    module, args, kwargs = prepared_call(model, name, call)
    with torch.no_grad():
        output = first_tensor(module(*args, **kwargs))
    if output is None:
        raise ValueError("the block returned no tensor")
    return host(output)
