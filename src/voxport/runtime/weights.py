"""Strict safetensors loading straight into a model built on the meta device.

Building a multi-billion-parameter model normally initialises every weight at random only to overwrite it;
on the meta device construction is free, and each tensor is read once, converted and placed on the target.
Strict: a missing or unexpected key is an error that names it, never a silently random weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from voxport.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"


def safetensors_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint: those its shard index names, or every *.safetensors file."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as error:
            raise CheckpointError(f"cannot read {index}: {error}") from None
        missing = [name for name in names if not (directory / name).is_file()]
        if missing:
            raise CheckpointError(f"{directory} is missing shard {missing[0]} (listed in {INDEX_FILE})")
        return [directory / name for name in names]
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory} has no *.safetensors weight files")
    return files


def load_weights_strict(model: nn.Module, files: list[Path], device: torch.device, dtype: torch.dtype) -> None:
    """Fill `model` from safetensors `files`, one shard in memory at a time (see `assign_strict`)."""
    keys = []
    for file in files:
        with _open(file) as shard:
            keys += shard.keys()
    check_keys(model, keys, files[0].parent)
    for file in files:
        with _open(file) as shard:
            assign(model, {key: shard.get_tensor(key) for key in shard.keys()}, device, dtype)


def assign_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
    source: Path,
    float32_prefixes: tuple[str, ...] = (),
) -> None:
    """Fill every parameter of `model` from `state`; buffers it holds replace the computed ones. Parameters
    under `float32_prefixes` (modules that run in float32) are placed in float32 straight from `state`."""
    check_keys(model, state.keys(), source)
    kept = {key for key in state if key.startswith(float32_prefixes)} if float32_prefixes else set()
    assign(model, {key: state[key] for key in state.keys() - kept}, device, dtype)
    assign(model, {key: state[key] for key in kept}, device, torch.float32)


def check_keys(model: nn.Module, keys, source: Path) -> None:
    """Every parameter must be present and every key known; buffers the model computes itself may be absent."""
    keys = set(keys)
    parameters = {name for name, _ in model.named_parameters()}
    missing, unexpected = sorted(parameters - keys), sorted(keys - set(model.state_dict()))
    if missing or unexpected:
        named = [f"missing {key}" for key in missing[:3]] + [f"unexpected {key}" for key in unexpected[:3]]
        more = len(missing) + len(unexpected) - len(named)
        raise CheckpointError(
            f"weights in {source} do not match the model: {', '.join(named)}"
            + (f" (and {more} more)" if more > 0 else "")
        )


def assign(model: nn.Module, tensors: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> None:
    """Place `tensors` in `model` on `device`: floating parameters in `dtype`, buffers as stored."""
    parameters = {name for name, _ in model.named_parameters()}
    placed = {
        key: tensor.to(
            device=device, dtype=dtype if key in parameters and tensor.is_floating_point() else None, copy=True
        )  # never a view of a memory-mapped file, so loading really reads
        for key, tensor in tensors.items()
    }
    model.load_state_dict(placed, strict=False, assign=True)


def _open(file: Path):
    try:
        return safe_open(file, framework="pt", device="cpu")
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"cannot read weights {file}: {error}") from None
