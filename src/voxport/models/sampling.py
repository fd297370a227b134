"""Token choice from logits: blocked ids, greedy, temperature and top-k sampling without host syncs."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingSettings:
    """How one token is picked; greedy ignores temperature and top-k."""

    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
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
    if settings.top_p < 1.0:
        probs = _nucleus(probs, settings.top_p)
    # argmax(p / E) with E ~ Exp(1) draws from p (the exponential race) and, unlike multinomial, never syncs.
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make each id in `seen` [batch, n] less likely: positive logits divided by `penalty`, negative multiplied."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    scores = logits.gather(-1, seen)
    scores = torch.where(scores < 0, scores * penalty, scores / penalty)
    return logits.scatter(-1, seen, scores)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the most likely ids whose mass first reaches `top_p` (always at least one), renormalised."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)
