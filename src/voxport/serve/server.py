"""Setting up what a server serves: its listening socket, models (each with its worker, chosen by what the
model can do) and voices."""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path
from typing import cast

import torch

from voxport.errors import InputError
from voxport.models.base import AnswersAudio, SpeaksText
from voxport.models.registry import family_of
from voxport.serve.app import ServedModel
from voxport.serve.chat import run_chat
from voxport.serve.speech import batch_key, run_speech
from voxport.serve.voices import VoiceBook, parse_named_voice
from voxport.serve.workers import ModelWorker
from voxport.services.chat import ChatService
from voxport.services.speech import SpeechService


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, taken before any model loads, so a busy port fails at once (0: a free port)."""
    listening = None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:
        if listening is not None:
            listening.close()
        raise InputError(
            f"cannot listen on {host}:{port}: {error.strerror or error} (is another server using "
            "it? pick another --port, or 0 for a free one)"
        ) from None
    return listening


def load_models(
    specs: list[str],
    device: torch.device,
    dtype: torch.dtype,
    max_queue: int,
    max_batch: int,
    progress=print,
    aligner: str | Path | None = None,
) -> dict[str, ServedModel]:
    """`NAME=SOURCE` or `SOURCE` (then the name is the source) for each model to serve; `aligner` times words
    for speech requests that ask (loaded at the first; None: the default one)."""
    served = {}
    for name, source in model_specs(specs).items():
        family = family_of(source)
        progress(f"loading {family.description} '{name}' from {source} on {device}")
        model = family.model.load(source, device, dtype)
        service: SpeechService | ChatService
        speech_error = None
        if family.capability == "speaks_text":
            speech = SpeechService(cast(SpeaksText, model), aligner)
            worker = ModelWorker(name, partial(run_speech, speech), max_queue, max_batch, batch_key)
            service = speech
        else:
            chat = ChatService(cast(AnswersAudio, model))
            worker = ModelWorker(name, partial(run_chat, chat), max_queue)
            speech_error = chat.prepare_speech()
            service = chat
        served[name] = ServedModel(name, family.name, service, worker, speech_error)
    return served


def model_specs(specs: list[str]) -> dict[str, str]:
    """Each model's name and source, from `NAME=SOURCE` or `SOURCE` (then the name is the source)."""
    named: dict[str, str] = {}
    for spec in specs:
        name, source = spec.split("=", 1) if "=" in spec and not Path(spec).exists() else (spec, spec)
        if name in named:
            raise InputError(f"model name '{name}' is given twice: name them NAME=SOURCE")
        named[name] = source
    return named


def load_voices(specs: list[str], directory: Path | None) -> VoiceBook:
    """Custom voices kept in `directory`, and `NAME=AUDIO:TEXT` voices from the command line."""
    named = dict(parse_named_voice(spec) for spec in specs)
    return VoiceBook(directory, named)
