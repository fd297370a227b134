"""The face every model family shows to validate/ and the CLI; validate/ uses nothing else."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from voxport.errors import InputError
from voxport.models.sampling import SamplingSettings
from voxport.runtime.seeding import check_seed


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

    def weight_bytes_per_prompt(self) -> int:
        """Weight bytes a prompt's prefill reads, whatever its length."""

    def compile(self) -> None:
        """Capture the per-step work as one compiled graph where the device backend can (else run eagerly)."""

    def named_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """Submodules by name, for per-layer drift hooks."""

    def accuracy_examples(
        self, texts: list[str] | None = None, audios: list[str | Path] | None = None
    ) -> dict[str, Any]:
        """Named inputs for accuracy: the family's default set (English, Chinese, one long) unless given."""

    def accuracy_stages(self, example: Any) -> list[Stage]:
        """The stages of the real job on `example`, in execution order, inputs computed by this model."""

    def checkpoint_name(self, module: str) -> str:
        """The checkpoint key prefix of a module (where a library renames modules on load); else the name."""


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


def repeated_blocks(module: nn.Module, prefix: str) -> list[str]:
    """The outermost repeated units under `prefix`: modules held in a ModuleList (layers, blocks, stages)."""
    modules = dict(module.named_modules())
    found: list[str] = []
    for name, child in modules.items():
        if not (name == prefix or name.startswith(prefix + ".")) or "." not in name:
            continue
        parent = modules.get(name.rsplit(".", 1)[0])
        if (
            isinstance(parent, nn.ModuleList)
            and not isinstance(child, (nn.ModuleList, nn.ModuleDict))
            and not any(name.startswith(outer + ".") for outer in found)
        ):
            found.append(name)
    return found


# Capabilities: what a model can do, declared by the family (a ClassVar flag) rather than guessed from its
# name, so the services and doors route by them and a new family needs no edit outside its own folder. Each
# capability comes with the family's defaults, declared once: every door leaves a choice at None and the
# service fills it from here.


@dataclass(frozen=True)
class VoiceSample:
    """Earlier speech in the voice to keep: a recording and the words spoken in it."""

    audio: np.ndarray  # mono float32 at the model's sample_rate
    text: str
    speaker: int | None = None  # who spoke it (a speaker id of the model's own); None: the new speech's speaker


@dataclass(frozen=True)
class SpeechDefaults:
    """What a text-speaking family does where a request leaves the choice open."""

    sampling: SamplingSettings  # temperature and top-k when sampling
    speaker: int = 0
    base_seconds: float = 2.0  # a chunk's audio budget is base_seconds + seconds_per_char x its characters:
    seconds_per_char: float = 0.12  # generous (8 characters a second), so slow speech is never cut
    max_chunk_chars: int = 200  # longer texts are spoken chunk by chunk (about 13 s of speech each)
    context_chunks: int = 2  # chunks already spoken that the next one hears as its voice context

    def budget_seconds(self, text: str) -> float:
        """The most audio one chunk of text may take unless the request caps it."""
        return self.base_seconds + self.seconds_per_char * len(text)


@dataclass(frozen=True)
class SpeechSpec:
    """One chunk of text to speak, every choice made: what a text-speaking model takes."""

    text: str
    speaker: int
    context: tuple[VoiceSample, ...]  # earlier speech in this voice, oldest first
    max_steps: int  # the most generation steps (frames) this chunk may take
    min_steps: int  # steps before the end of speech may come
    sampling: SamplingSettings
    seed: int


class TimedAudio:
    """Audio made with the seconds of each phase that made it: how long it lasts, and what it cost."""

    audio: np.ndarray  # float32 mono
    sample_rate: int
    timings: dict[str, float]

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def compute_seconds(self) -> float:
        return sum(self.timings.values())


@dataclass
class SpokenAudio:
    """Audio a speaking model made, whole or as one streamed piece."""

    audio: np.ndarray  # float32 mono
    sample_rate: int
    output_tokens: int  # generation steps that made it (frames for CSM)
    compute_seconds: float = 0.0
    codes: np.ndarray | None = None  # the steps' ids [steps, ...], where the family has them
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each phase (prompt, generation, decode)

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@runtime_checkable
class SpeaksText(Protocol):
    """Capability: text in, speech out (`voxport tts`, POST /v1/audio/speech, batch rows)."""

    speaks_text: ClassVar[bool]  # True
    speech_defaults: ClassVar[SpeechDefaults]
    sample_rate: int
    step_rate: float  # generation steps per second of audio

    def speak(self, specs: list[SpeechSpec], on_step: Callable[[int], None] | None = None) -> list[SpokenAudio]:
        """Speech for each spec, as one batch (the specs share `sampling`; each row keeps its own seed and step
        limits, so a spec gives the same audio alone or batched); raises InputError on bad specs. `on_step(n)`
        hears the steps done so far (it may raise to stop the batch)."""
        ...

    def speak_stream(self, spec: SpeechSpec) -> Iterator[SpokenAudio]:
        """Pieces of the speech for `spec` as they are made, in order."""
        ...

    def count_text_tokens(self, text: str) -> int:
        """Tokens `text` takes in the prompt (usage reports)."""
        ...


CHAT_MODES = ("a2t", "a2ta")  # audio in; text out, or text and speech out


@dataclass(frozen=True)
class ChatSettings:
    """How a spoken conversation is answered; a None is the family's default (`AnswersAudio.chat_defaults`)."""

    mode: str = "a2t"
    max_new_tokens: int | None = None
    greedy: bool = False
    temperature: float | None = None  # 0: greedy, as OpenAI's API reads it
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    persona: str | None = None  # a system prompt replacing the family's own persona

    def __post_init__(self) -> None:
        if self.mode not in CHAT_MODES:
            raise InputError(f"unknown mode '{self.mode}': expected {' or '.join(CHAT_MODES)}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise InputError(f"max new tokens is {self.max_new_tokens}: expected a positive number")
        if self.temperature is not None and not 0 <= self.temperature < math.inf:  # NaN fails this too
            raise InputError(f"temperature is {self.temperature}: expected 0 (greedy) or a positive finite number")
        if self.temperature == 0:
            object.__setattr__(self, "greedy", True)
            object.__setattr__(self, "temperature", None)
        check_seed(self.seed)
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"top-p is {self.top_p}: expected a number in (0, 1]")
        if self.top_k is not None and self.top_k < 0:
            raise InputError(f"top-k is {self.top_k}: expected 0 (off) or a positive number")
        if self.persona is not None and not self.persona.strip():
            raise InputError("the system prompt is empty: expected text, or none for the model's own")

    @property
    def speaks(self) -> bool:
        return self.mode == "a2ta"

    def with_defaults(self, defaults: ChatSettings) -> ChatSettings:
        """These settings with every open choice taken from `defaults`."""
        chosen = {name: getattr(self, name) for name in ("max_new_tokens", "temperature", "top_p", "top_k")}
        return replace(
            self, **{name: getattr(defaults, name) if value is None else value for name, value in chosen.items()}
        )


@dataclass
class ChatRound:
    """One answered (or remembered) turn of a spoken conversation."""

    index: int
    text: str
    text_token_ids: list[int]
    audio_codes: list[int]  # speech codes of a spoken reply, kept for its synthesis
    reply_ids: list[int]  # what the model's cache holds of the reply (text and speech ids)
    audio_features: int  # encoder features the user's clip filled
    generation_seconds: float  # front end, encoder and language model, device synchronized
    prefill_positions: int  # prompt positions this round added before generating
    cache_positions_before: int  # history the round started from
    stopped: bool  # the stop token ended the round (else max new tokens did)
    speech: np.ndarray | None = field(default=None, repr=False)  # a2ta: the spoken reply, float32 mono
    decode_seconds: float | None = None  # a2ta: speech synthesis time, device synchronized

    def to_json(self) -> dict[str, Any]:
        """Everything but the waveform itself."""
        return {key: value for key, value in asdict(self).items() if key != "speech"}


class Conversation(Protocol):
    """A conversation with one loaded model that remembers earlier rounds."""

    seed: int
    rounds: list[ChatRound]

    def remember(self, clip: Any, reply: str | Sequence[int]) -> ChatRound:
        """Put an earlier round (the user's clip, the reply given then: its text or its `reply_ids`) into the
        model's memory without generating."""
        ...

    def say(self, clip: Any, on_token: Callable[[list[int]], None] | None = None) -> ChatRound:
        """Answer one user clip; `on_token(ids)` hears the reply's ids so far after each chunk of tokens."""
        ...


@runtime_checkable
class AnswersAudio(Protocol):
    """Capability: a spoken turn in, a text (and optionally spoken) reply out (`voxport chat`, POST
    /v1/chat/completions, batch rows)."""

    answers_audio: ClassVar[bool]  # True
    chat_defaults: ClassVar[ChatSettings]  # every open choice filled
    input_rate: int  # the sample rate clips are heard at
    load_seconds: float
    load_timings: dict[str, float]  # seconds of each phase of loading

    def chat(self, settings: ChatSettings) -> Conversation:
        """A new conversation answered with `settings` (open choices from `chat_defaults`)."""
        ...

    def prepare_clip(self, audio: np.ndarray | str | Path) -> Any:
        """A user turn the model can hear: samples at `input_rate`, or a file (checked by the audio policy)."""
        ...

    def reply_text(self, ids: Sequence[int]) -> str:
        """The text of a reply's ids so far (speech ids left out)."""
        ...

    def load_speech_decoder(self, prompt_dir: Path | None = None) -> None:
        """Prepare spoken replies (in the voice of `prompt_dir`, else the model's own); raises a VoxportError
        saying why the model cannot speak them."""
        ...

    @property
    def speech_rate(self) -> int:
        """The sample rate of spoken replies (loading the speech decoder if needed)."""
        ...


def speaks_text(model: object) -> bool:
    return getattr(model, "speaks_text", False) is True


def answers_audio(model: object) -> bool:
    return getattr(model, "answers_audio", False) is True
