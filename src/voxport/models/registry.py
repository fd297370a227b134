"""Every model family voxport knows: its own, and those installed packages declare.

A family is declared by a `ModelFamily` in the `voxport.models` entry-point group (voxport's own come through
the same group, from its pyproject.toml), so a family can live in a package of its own with no edit to voxport.
Families name their classes by import path, so listing them (as `--help` does) loads no model code.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxport.errors import CheckpointError, InputError

if TYPE_CHECKING:
    import torch

    from voxport.models.base import SpeechModel
    from voxport.runtime.streaming import Streaming

ENTRY_POINTS = "voxport.models"
CAPABILITIES = ("speaks_text", "answers_audio")  # the class flags a family's model may declare


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_type: str  # config.json's model_type
    description: str
    model_path: str  # "module:Class" of the SpeechModel
    make_tiny_path: str  # "module:function" writing a random checkpoint (directory, seed, size=, layers=)
    capability: str  # what the model does: one of CAPABILITIES
    default_source: str | None = None  # the hub id a door loads when none is named

    @property
    def model(self) -> type[SpeechModel]:
        return _resolve(self.model_path)  # type: ignore[no-any-return]

    @property
    def make_tiny(self) -> Callable[..., Path]:
        return _resolve(self.make_tiny_path)  # type: ignore[no-any-return]


@cache
def families() -> dict[str, ModelFamily]:
    """Every declared family by name: voxport's own first, then those of installed packages."""
    found: dict[str, ModelFamily] = {}
    for point in sorted(
        entry_points(group=ENTRY_POINTS), key=lambda point: (not point.value.startswith("voxport."), point.name)
    ):
        family = point.load()
        if not isinstance(family, ModelFamily) or family.capability not in CAPABILITIES:
            raise CheckpointError(
                f"entry point {point.name} = {point.value} in {ENTRY_POINTS} is not a voxport "
                f"ModelFamily with a capability of {', '.join(CAPABILITIES)}"
            )
        found.setdefault(family.name, family)
    return found


def family_named(name: str) -> ModelFamily:
    known = families()
    if name not in known:
        raise InputError(f"unknown model family '{name}': expected one of {', '.join(known)}")
    return known[name]


def default_source(capability: str) -> str | None:
    """The hub id a door loads for `capability` when the user names no model: the first family's that has one."""
    return next(
        (
            family.default_source
            for family in families().values()
            if family.capability == capability and family.default_source
        ),
        None,
    )


def family_of(source: str | Path) -> ModelFamily:
    """The family of a checkpoint directory or hub id, from its config.json's model_type."""
    from voxport.runtime.checkpoints import resolve_checkpoint

    path = resolve_checkpoint(source, allow_patterns=["config.json"])
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path / 'config.json'}: {error}") from None
    for family in families().values():
        if family.model_type == model_type:
            return family
    known = ", ".join(family.model_type for family in families().values())
    raise CheckpointError(f"{source} is a '{model_type}' model, which voxport cannot handle (it knows {known})")


def load_model(
    source: str | Path,
    device: torch.device,
    dtype: torch.dtype,
    capability: str | None = None,
    streaming: Streaming | None = None,
) -> SpeechModel:
    """The model at `source`; with `capability`, refused before loading unless its family has it. With
    `streaming`, a family that declares `streams_weights` reads its weights as its blocks run (others load whole)."""
    family = family_of(source)
    if capability is not None and family.capability != capability:
        able = [other.description for other in families().values() if other.capability == capability]
        raise InputError(
            f"{source} is a {family.description} checkpoint, which cannot do this: expected a model "
            f"that {capability.replace('_', ' ')} ({', '.join(able) or 'none installed'})"
        )
    if streaming is not None and getattr(family.model, "streams_weights", False):
        return family.model.load(source, device, dtype, streaming=streaming)  # type: ignore[call-arg]
    return family.model.load(source, device, dtype)


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
