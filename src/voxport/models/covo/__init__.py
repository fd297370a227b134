"""Tencent Covo-Audio-Chat: speech in, text (and speech codes) out, over many rounds."""

from voxport.models.covo.chat import ChatRound, ChatSettings, CovoChat
from voxport.models.covo.model import ChatRequest, CovoAudioChat

__all__ = ["ChatRequest", "ChatRound", "ChatSettings", "CovoAudioChat", "CovoChat"]
