"""The face every model family shows to validate/ and the CLI; validate/ uses nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


class SpeechModel(Protocol):
    """A loaded model on one device: the real job plus the hooks a port needs to be proven."""

    family: str
    step_unit: str  # what one generation step makes: "frame" (80 ms of audio) or "token"
    device: torch.device
    dtype: torch.dtype
    load_seconds: float

    @classmethod
    def load(cls, source: str | Path, device: torch.device, dtype: torch.dtype) -> SpeechModel:
        """From a local directory or a hub id, through the same code for real and tiny weights."""

    def example_inputs(self) -> Any:
        """Fixed, deterministic inputs for accuracy checks."""

    def bench_inputs(self, size: str) -> Any:
        """Fixed inputs of a length class, "short", "medium" or "long", for benchmarks."""

    def forward_logits(self, inputs: Any) -> dict[str, torch.Tensor]:
        """Teacher-forced outputs of every stage on `inputs`: the numbers accuracy compares across devices."""

    def greedy_tokens(self, inputs: Any, steps: int) -> torch.Tensor:
        """Exactly `steps` greedy generation steps (end ignored): [steps, ...] ids."""

    def token_logits(self, inputs: Any, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [steps, ..., vocab] predicting each id of `tokens`."""

    def tokens_to_audio(self, tokens: torch.Tensor) -> np.ndarray | None:
        """The audio generated tokens stand for, or None where they are text."""

    def run_fixed(self, inputs: Any, steps: int) -> float | None:
        """The real job for exactly `steps` steps; the seconds of audio it made (None for text)."""

    def weight_bytes_per_step(self) -> int:
        """Weight bytes one generation step must read: the memory-bandwidth bound's numerator."""

    def named_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """Submodules by name, for per-layer drift hooks."""


# Capabilities: what a model can do, declared by the family (a ClassVar flag) rather than guessed from its
# name, so serve/ and the CLI route by them and a new family needs no edit outside models/.


@dataclass(frozen=True)
class VoiceSample:
    """Earlier speech in the voice to keep: a recording and the words spoken in it."""

    audio: np.ndarray  # mono float32 at the model's sample_rate
    text: str


@dataclass(frozen=True)
class SpeechSpec:
    """What to say and how, in terms every text-speaking model takes; the family maps it onto its own request."""

    text: str
    speaker: int = 0  # a speaker id of the model's own
    context: tuple[VoiceSample, ...] = ()  # earlier speech in this voice, oldest first
    max_seconds: float = 10.0  # the most audio to make for this text
    temperature: float = 0.9
    top_k: int = 50  # 0: no top-k filter
    seed: int | None = None
    greedy: bool = False

    def sampling_key(self) -> tuple:
        """Specs equal in this key may be spoken as one batch (each row keeps its own seed)."""
        return (self.max_seconds, self.temperature, self.top_k, self.greedy)


@dataclass
class SpokenAudio:
    """Audio a speaking model made, whole or as one streamed piece."""

    audio: np.ndarray  # float32 mono
    sample_rate: int
    output_tokens: int  # generation steps that made it (frames for CSM)
    compute_seconds: float = 0.0

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@runtime_checkable
class SpeaksText(Protocol):
    """Capability: text in, speech out (POST /v1/audio/speech, `voxport tts`)."""

    speaks_text: ClassVar[bool]  # True
    sample_rate: int

    def speak(self, specs: list[SpeechSpec]) -> list[SpokenAudio]:
        """Speech for each spec, as one batch (the specs share `sampling_key()`; each row samples from its own
        seed, so a spec gives the same audio alone or batched); raises InputError on bad specs."""

    def speak_stream(self, spec: SpeechSpec) -> Iterator[SpokenAudio]:
        """Pieces of the speech for `spec` as they are made, in order."""

    def count_text_tokens(self, text: str) -> int:
        """Tokens `text` takes in the prompt (usage reports)."""


@runtime_checkable
class AnswersAudio(Protocol):
    """Capability: a spoken turn in, a text (and optionally spoken) reply out (POST /v1/chat/completions)."""

    answers_audio: ClassVar[bool]  # True

    def chat(self, settings: Any) -> Any:
        """A conversation that remembers earlier rounds and answers the next clip."""

    def load_speech_decoder(self) -> Any:
        """Prepare spoken replies; raises a VoxportError saying why the model cannot speak them."""


def speaks_text(model: object) -> bool:
    return getattr(model, "speaks_text", False) is True


def answers_audio(model: object) -> bool:
    return getattr(model, "answers_audio", False) is True
