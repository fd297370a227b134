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
    """Fill every parameter and persistent buffer of `model` from `files`, floating ones cast to `dtype`."""
    expected = set(model.state_dict())
    found = {}
    for file in files:
        with _open(file) as shard:
            found.update(dict.fromkeys(shard.keys(), file))
    missing, unexpected = sorted(expected - found.keys()), sorted(found.keys() - expected)
    if missing or unexpected:
        named = [f"missing {key}" for key in missing[:3]] + [f"unexpected {key}" for key in unexpected[:3]]
        more = len(missing) + len(unexpected) - len(named)
        raise CheckpointError(
            f"weights in {files[0].parent} do not match the model: {', '.join(named)}"
            + (f" (and {more} more)" if more > 0 else "")
        )
    for file in files:
        with _open(file) as shard:
            tensors = {key: _placed(shard.get_tensor(key), device, dtype) for key in shard.keys()}
        model.load_state_dict(tensors, strict=False, assign=True)


def _placed(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A tensor of its own on `device`: never a view of the file's memory map, so loading really reads."""
    return tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype, copy=True)


def _open(file: Path):
    try:
        return safe_open(file, framework="pt", device="cpu")
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"cannot read weights {file}: {error}") from None
