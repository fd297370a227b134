"""Every model family voxport knows: adding one is a folder under models/ and one line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voxport.models.base import SpeechModel
from voxport.models.covo import CovoAudioChat
from voxport.models.csm import CsmSpeech
from voxport.models.tiny import make_tiny_covo, make_tiny_csm


@dataclass(frozen=True)
class ModelFamily:
    name: str
    description: str
    model: type[SpeechModel]
    make_tiny: Callable[[Path, int], Path]


FAMILIES = {
    family.name: family
    for family in [
        ModelFamily("csm", "Sesame CSM-1B text-to-speech", CsmSpeech, make_tiny_csm),
        ModelFamily("covo", "Tencent Covo-Audio-Chat speech chat", CovoAudioChat, make_tiny_covo),
    ]
}
