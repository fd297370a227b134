"""Every model family voxport knows: adding one is a folder under models/ and one line here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from voxport.errors import CheckpointError
from voxport.models.base import SpeechModel
from voxport.models.covo import CovoAudioChat
from voxport.models.csm import CsmSpeech
from voxport.models.tiny import make_tiny_covo, make_tiny_csm
from voxport.runtime.checkpoints import resolve_checkpoint


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_type: str  # config.json's model_type
    description: str
    model: type[SpeechModel]
    make_tiny: Callable[[Path, int], Path]


FAMILIES = {
    family.name: family
    for family in [
        ModelFamily("csm", "csm", "Sesame CSM-1B text-to-speech", CsmSpeech, make_tiny_csm),
        ModelFamily("covo", "covo_audio", "Tencent Covo-Audio-Chat speech chat", CovoAudioChat, make_tiny_covo),
    ]
}


def family_of(source: str | Path) -> ModelFamily:
    """The family of a checkpoint directory or hub id, from its config.json's model_type."""
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
