"""The face every model family shows to validate/ and the CLI; validate/ uses nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

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
