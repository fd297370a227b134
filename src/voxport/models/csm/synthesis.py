"""What a CSM synthesis is asked to do, and what it gives back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxport.errors import InputError
from voxport.models.base import SpeechDefaults, SpeechSpec, TimedAudio
from voxport.models.sampling import SamplingSettings
from voxport.runtime.seeding import check_seed

# What CSM does where a request leaves the choice open: every door's default (the reference samples at
# temperature 0.9 among the 50 best codes).
SPEECH_DEFAULTS = SpeechDefaults(sampling=SamplingSettings(temperature=0.9, top_k=50))


@dataclass(frozen=True)
class ContextTurn:
    """An earlier turn of the conversation whose voice the new speech continues."""

    speaker: int
    text: str
    audio: np.ndarray | str | Path  # mono samples at the codec's rate, or a file soundfile reads


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    speaker: int = 0
    context: tuple[ContextTurn, ...] = ()
    max_frames: int = 125  # 80 ms each: 10 s
    min_frames: int = 0
    temperature: float = SPEECH_DEFAULTS.sampling.temperature
    top_k: int = SPEECH_DEFAULTS.sampling.top_k
    seed: int | None = None
    greedy: bool = False

    def __post_init__(self):
        if not self.text.strip():
            raise InputError("text is empty: expected words to speak")
        if self.max_frames < 1:
            raise InputError(f"max frames is {self.max_frames}: expected a positive number of 80 ms frames")
        if not 0 <= self.min_frames <= self.max_frames:
            raise InputError(f"min frames is {self.min_frames}: expected 0..max frames ({self.max_frames})")
        if not 0 < self.temperature < math.inf:  # NaN fails this too
            raise InputError(f"temperature is {self.temperature}: expected a positive finite number")
        check_seed(self.seed)
        if self.top_k < 0:
            raise InputError(f"top-k is {self.top_k}: expected 0 (off) or a positive number")
        for turn in (self, *self.context):
            if turn.speaker < 0:
                raise InputError(f"speaker id is {turn.speaker}: expected a non-negative integer")

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(temperature=self.temperature, top_k=self.top_k, greedy=self.greedy)

    @classmethod
    def from_spec(cls, spec: SpeechSpec) -> SynthesisRequest:
        """The CSM request for a family-independent spec: a context sample without a speaker speaks as the
        spec's speaker."""
        context = tuple(
            ContextTurn(spec.speaker if sample.speaker is None else sample.speaker, sample.text, sample.audio)
            for sample in spec.context
        )
        return cls(
            text=spec.text,
            speaker=spec.speaker,
            context=context,
            max_frames=spec.max_steps,
            min_frames=spec.min_steps,
            temperature=spec.sampling.temperature,
            top_k=spec.sampling.top_k,
            seed=spec.seed,
            greedy=spec.sampling.greedy,
        )


@dataclass
class SynthesisResult(TimedAudio):
    audio: np.ndarray  # float32 mono
    sample_rate: int
    codes: np.ndarray  # int64 [frames, codebooks]
    seed: int
    timings: dict[str, float] = field(default_factory=dict)  # prompt, generation, decode seconds

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def rtf(self) -> float:
        """Real-time factor: compute seconds per second of audio (lower is better)."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else float("inf")
