"""Token choice from logits: blocked ids, greedy, temperature and top-k sampling without host syncs."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingSettings:
    """How one token is picked; greedy ignores temperature and top-k."""

    temperature: float = 0.9
    top_k: int = 50
    greedy: bool = False


def block_ids(logits: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """Logits in float32 with the `blocked` ids set to -inf, so they can never be picked."""
    logits = logits.float()
    return logits.index_fill(-1, blocked, float("-inf"))


def pick_tokens(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None) -> torch.Tensor:
    """One id per row of `logits` [..., vocab]."""
    if settings.greedy:
        return logits.argmax(dim=-1)
    logits = logits / settings.temperature
    if 0 < settings.top_k < logits.shape[-1]:
        kth_best = torch.topk(logits, settings.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    # argmax(p / E) with E ~ Exp(1) draws from p (the exponential race) and, unlike multinomial, never syncs.
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)
