"""Every model family voxport knows: adding one is a folder under models/ and one line here.

Families name their classes by import path, so listing them (as `--help` does) loads no model code.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from voxport.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from voxport.models.base import SpeechModel


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_type: str  # config.json's model_type
    description: str
    model_path: str  # "module:Class" of the SpeechModel
    make_tiny_path: str  # "module:function" writing a random checkpoint (directory, seed, size=, layers=)

    @property
    def model(self) -> type[SpeechModel]:
        return _resolve(self.model_path)

    @property
    def make_tiny(self) -> Callable[..., Path]:
        return _resolve(self.make_tiny_path)


FAMILIES = {
    family.name: family
    for family in [
        ModelFamily("csm", "csm", "Sesame CSM-1B text-to-speech", "voxport.models.csm:CsmSpeech",
                    "voxport.models.tiny:make_tiny_csm"),
        ModelFamily("covo", "covo_audio", "Tencent Covo-Audio-Chat speech chat", "voxport.models.covo:CovoAudioChat",
                    "voxport.models.tiny:make_tiny_covo"),
    ]
}


def family_of(source: str | Path) -> ModelFamily:
    """The family of a checkpoint directory or hub id, from its config.json's model_type."""
    from voxport.runtime.checkpoints import resolve_checkpoint

    path = resolve_checkpoint(source, allow_patterns=["config.json"])
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path / 'config.json'}: {error}") from None
    for family in FAMILIES.values():
        if family.model_type == model_type:
            return family
    known = ", ".join(family.model_type for family in FAMILIES.values())
    raise CheckpointError(f"{source} is a '{model_type}' model, which voxport cannot handle (it knows {known})")


def load_model(source: str | Path, device: torch.device, dtype: torch.dtype) -> SpeechModel:
    return family_of(source).model.load(source, device, dtype)


def _resolve(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
