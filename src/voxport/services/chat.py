"""Spoken conversations, the one implementation every door calls: `voxport chat`, `voxport batch chat` on Ray,
POST /v1/chat/completions and Python.

A conversation's history (earlier user clips and the replies given then) is put into the model's memory
without generating, then each new user turn is answered; the settings leave open choices to the family's
`chat_defaults`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from voxport.audio.io import resample
from voxport.errors import InputError, VoxportError
from voxport.models.base import AnswersAudio, ChatRound, ChatSettings, Conversation
from voxport.models.registry import load_model

Reply = str | tuple[int, ...]  # an earlier reply: its text, or the ids the model made then


@dataclass(frozen=True)
class ChatRequest:
    """One user turn to answer after the conversation so far."""

    clip: Any  # the user's turn, from `ChatService.clip`
    settings: ChatSettings = ChatSettings()
    history: tuple[tuple[Any, Reply], ...] = ()  # earlier user clips and the replies given then, oldest first


class ChatService:
    """Conversations with one loaded audio-answering model."""

    def __init__(self, model: AnswersAudio):
        if not getattr(model, "answers_audio", False):
            raise InputError(f"{type(model).__name__} does not answer audio")
        self.model = model
        self.defaults = model.chat_defaults
        self._speech_error: str | None = None
        self._speech_ready = False

    @classmethod
    def load(cls, source: str | Path, device: torch.device, dtype: torch.dtype) -> ChatService:
        """The service of the model at `source`, refused before loading unless it answers audio."""
        return cls(cast(AnswersAudio, load_model(source, device, dtype, capability="answers_audio")))

    def clip(self, audio: np.ndarray | str | Path, rate: int | None = None) -> Any:
        """A user turn from a file, or from samples at `rate` (resampled to the rate the model hears)."""
        if isinstance(audio, np.ndarray):
            audio = resample(audio, rate or self.model.input_rate, self.model.input_rate)
        return self.model.prepare_clip(audio)

    def prepare_speech(self, prompt_dir: Path | None = None) -> str | None:
        """Load what spoken replies need (in the voice of `prompt_dir`, else the model's own); None when the
        model can speak, else why it cannot."""
        try:
            self.model.load_speech_decoder(prompt_dir)
        except VoxportError as error:
            self._speech_error = str(error)
        else:
            self._speech_error, self._speech_ready = None, True
        return self._speech_error

    @property
    def speech_rate(self) -> int:
        return self.model.speech_rate

    def open(self, settings: ChatSettings, history: Sequence[tuple[Any, Reply]] = ()) -> Conversation:
        """A conversation that remembers `history` and answers with `settings`."""
        if settings.speaks and not self._speech_ready:
            error = self._speech_error or self.prepare_speech()
            if error:
                raise InputError(f"the model cannot speak its replies: {error}")
        conversation = self.model.chat(settings)
        for clip, reply in history:
            conversation.remember(clip, reply)
        return conversation

    def answer(self, request: ChatRequest, on_token: Callable[[list[int]], None] | None = None) -> ChatRound:
        """The reply to the request's user turn; `on_token(ids)` hears the reply's ids so far."""
        return self.open(request.settings, request.history).say(request.clip, on_token=on_token)

    def reply_text(self) -> ReplyText:
        return ReplyText(self.model)


class ReplyText:
    """New reply text as tokens come: the reply's ids decoded again, less what was given out before (a
    character split across tokens waits until it is whole)."""

    def __init__(self, model: AnswersAudio):
        self.model, self.sent = model, ""

    def add(self, ids: list[int]) -> str:
        text = self.model.reply_text(ids)
        if text == self.sent or text.endswith("\ufffd") or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta
