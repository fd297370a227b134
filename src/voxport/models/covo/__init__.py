"""Tencent Covo-Audio-Chat: speech in, text (and speech codes) out, over many rounds."""

from voxport.models.covo.chat import CHAT_DEFAULTS, CovoChat
from voxport.models.covo.model import CovoAudioChat

__all__ = ["CHAT_DEFAULTS", "CovoAudioChat", "CovoChat"]
