"""The face every model family shows to validate/ and the CLI; validate/ uses nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
