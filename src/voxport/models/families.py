"""voxport's own model families, declared to the registry through the `voxport.models` entry-point group
(pyproject.toml), as any installed package declares its own."""

from voxport.models.registry import ModelFamily

CSM = ModelFamily(
    "csm",
    "csm",
    "Sesame CSM-1B text-to-speech",
    "voxport.models.csm:CsmSpeech",
    "voxport.models.tiny:make_tiny_csm",
    capability="speaks_text",
    default_source="sesame/csm-1b",
)
COVO = ModelFamily(
    "covo",
    "covo_audio",
    "Tencent Covo-Audio-Chat speech chat",
    "voxport.models.covo:CovoAudioChat",
    "voxport.models.tiny:make_tiny_covo",
    capability="answers_audio",
    default_source="tencent/Covo-Audio-Chat",
)
