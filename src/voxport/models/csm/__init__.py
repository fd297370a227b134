"""Sesame CSM-1B: text (+ voice context) to 24 kHz speech."""

from voxport.models.csm.model import CsmSpeech
from voxport.models.csm.synthesis import ContextTurn, SynthesisRequest, SynthesisResult

__all__ = ["ContextTurn", "CsmSpeech", "SynthesisRequest", "SynthesisResult"]
