"""Token choice from logits: greedy, or temperature / top-k / top-p sampling without host syncs."""

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


def pick_tokens(
    logits: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
    gumbel: torch.Tensor | None = None,
) -> torch.Tensor:
    """One id per row of `logits` [..., vocab].

    Sampling is Gumbel-max over the top-k: argmax(logit + T x G), G = -log(Exp(1)), draws from
    softmax(logit / T) with no softmax and no host sync. `gumbel` (from `gumbel_noise`, shape
    [..., candidates]: the top-k, or the vocabulary) supplies T x G; otherwise it is drawn from `generator`.
    """
    if settings.greedy:
        return logits.argmax(dim=-1)
    scores, indices = logits, None
    if 0 < settings.top_k < logits.shape[-1]:
        scores, indices = scores.topk(settings.top_k, dim=-1)
    if settings.top_p < 1.0:
        scores = scores.masked_fill(~_nucleus(scores / settings.temperature, settings.top_p), float("-inf"))
    if gumbel is None:
        gumbel = gumbel_noise(scores.shape, settings, generator, scores.device)
    choice = (scores + gumbel).argmax(dim=-1)
    return choice if indices is None else indices.gather(-1, choice.unsqueeze(-1)).squeeze(-1)


def gumbel_noise(
    shape: tuple[int, ...] | torch.Size,
    settings: SamplingSettings,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Temperature-scaled Gumbel noise T x G for `pick_tokens`, drawn ahead in one kernel for many picks."""
    noise = torch.empty(shape, device=device).exponential_(1.0, generator=generator)
    return noise.log_().mul_(-settings.temperature)


NOISE_BLOCK = 8  # frames of noise a row draws in one call: fixed, so chunking never changes what is drawn


class RowNoise:
    """Gumbel noise for a batch in which row r's noise comes from `generators[r]` alone.

    Each row draws fixed blocks of NOISE_BLOCK frames from its own generator, so what a row samples depends on
    its seed only: not on the rows batched with it, nor on how the frames are chunked (streaming or one-shot).
    Draws stay on the device: no host sync.
    """

    def __init__(
        self,
        generators: list[torch.Generator],
        picks: int,
        width: int,
        settings: SamplingSettings,
        device: torch.device,
    ):
        self.generators, self.picks, self.width, self.settings, self.device = generators, picks, width, settings, device
        self.ready = torch.empty(0, picks, len(generators), width, device=device)

    def take(self, frames: int) -> torch.Tensor:
        """Noise [frames, picks, batch, width] for the next `frames` frames."""
        while self.ready.shape[0] < frames:
            block = torch.stack(
                [
                    gumbel_noise((NOISE_BLOCK, self.picks, self.width), self.settings, generator, self.device)
                    for generator in self.generators
                ],
                dim=2,
            )
            self.ready = torch.cat([self.ready, block])
        taken, self.ready = self.ready[:frames], self.ready[frames:]
        return taken


def candidates(settings: SamplingSettings, vocab: int) -> int:
    """How many ids sampling chooses among (the width of its Gumbel noise)."""
    return settings.top_k if 0 < settings.top_k < vocab else vocab


def _nucleus(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Which ids to keep: the most likely ones whose probability mass first reaches `top_p` (at least one)."""
    probs = torch.softmax(scores, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
