"""Covo-Audio's token loop: one LLM step a token, the reference's repetition penalties, stop at a token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import Qwen2ForCausalLM
from transformers.cache_utils import DynamicCache

from voxport.models.sampling import SamplingSettings, penalize_repeats, pick_tokens


@dataclass(frozen=True)
class RepetitionPenalties:
    """The reference applies both: one over the round's ids so far, one again over the last `window`."""

    penalty: float = 1.05
    windowed_penalty: float = 1.05
    window: int = 8


@dataclass
class TokenRun:
    ids: list[int]  # generated ids, the stop token included when it came
    prefill_positions: int  # positions the prompt added to the cache
    stopped: bool  # True when the stop token ended the run


@torch.inference_mode()
def generate_tokens(
    llm: Qwen2ForCausalLM,
    cache: DynamicCache,
    prompt_embeds: torch.Tensor,
    prompt_ids: torch.Tensor,
    stop_id: int,
    max_new_tokens: int,
    sampling: SamplingSettings,
    penalties: RepetitionPenalties,
    generator: torch.Generator | None,
    on_token: Callable[[int], None] | None = None,
) -> TokenRun:
    """Continue `cache` with the prompt, then pick tokens until `stop_id` or `max_new_tokens`;
    `on_token(n)` hears each time n tokens are done.

    As in the reference, the last token picked is not run through the model, so the cache ends just
    before it and the next round's prompt follows there.
    """
    logits = llm(inputs_embeds=prompt_embeds, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    seen = prompt_ids
    ids: list[int] = []
    for _ in range(max_new_tokens):
        scores = penalize_repeats(logits[:, -1].float(), seen, penalties.penalty)
        scores = penalize_repeats(scores, seen[:, -penalties.window :], penalties.windowed_penalty)
        token = pick_tokens(scores, sampling, generator)
        ids.append(int(token))
        if on_token is not None:
            on_token(len(ids))
        if ids[-1] == stop_id or len(ids) == max_new_tokens:
            break
        seen = torch.cat([seen, token.view(1, 1)], dim=1)
        logits = llm(input_ids=token.view(1, 1), past_key_values=cache, use_cache=True).logits
    return TokenRun(ids=ids, prefill_positions=prompt_embeds.shape[1], stopped=bool(ids) and ids[-1] == stop_id)
