"""The face every model family shows to validate/ and the CLI; validate/ uses nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
    load_timings: dict[str, float]  # seconds of each phase of load() (tokenizer, weights...), on-demand parts added

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

    def sampled_tokens(self, inputs: Any, steps: int, seed: int | None) -> torch.Tensor:
        """Exactly `steps` steps sampled with the family's default settings from `seed` (None: greedy)."""

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


@dataclass(frozen=True)
class Stage:
    """One part of the real job, replayed whole on any model of the family with the reference's inputs.

    `inputs` are host tensors (and plain values) the CPU float32 reference computed; `run(model, inputs)` runs
    the part on `model` (the inputs moved to its device and dtype) and returns its output tensor in the dtype
    it was made in. `blocks` names the modules (checkpoint key prefixes) recorded inside it for isolated replay:
    only modules whose every input is in their call (no cache carried between calls).
    """

    name: str
    inputs: Any
    run: Callable[[Any, Any], torch.Tensor]
    blocks: tuple[str, ...] = ()


class ReplayableModel(Protocol):
    """What accuracy needs beyond SpeechModel to replay every stage that makes tokens or audio."""

    def accuracy_examples(self, texts: list[str] | None = None, audios: list[str | Path] | None = None) -> dict[str, Any]:
        """Named inputs for accuracy: the family's default set (English, Chinese, one long) unless given."""

    def accuracy_stages(self, example: Any) -> list[Stage]:
        """The stages of the real job on `example`, in execution order, inputs computed by this model."""

    def checkpoint_name(self, module: str) -> str:
        """The checkpoint key prefix of a module (where a library renames modules on load); else the name."""


def repeated_blocks(module: nn.Module, prefix: str) -> list[str]:
    """The outermost repeated units under `prefix`: modules held in a ModuleList (layers, blocks, stages)."""
    modules = dict(module.named_modules())
    found: list[str] = []
    for name, child in modules.items():
        if not (name == prefix or name.startswith(prefix + ".")) or "." not in name:
            continue
        parent = modules.get(name.rsplit(".", 1)[0])
        if (isinstance(parent, nn.ModuleList) and not isinstance(child, (nn.ModuleList, nn.ModuleDict))
                and not any(name.startswith(outer + ".") for outer in found)):
            found.append(name)
    return found


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

    def speak(self, specs: list[SpeechSpec], on_step: Callable[[int], None] | None = None) -> list[SpokenAudio]:
        """Speech for each spec, as one batch (the specs share `sampling_key()`; each row samples from its own
        seed, so a spec gives the same audio alone or batched); raises InputError on bad specs. `on_step(n)`
        hears the steps done so far (it may raise to stop the batch)."""

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
