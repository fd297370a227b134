"""CSM's frame loop: backbone picks codebook 0, the depth decoder the other 31, one 80 ms frame a step.

Written against transformers' CSM modules (backbone, depth decoder, heads) rather than its nested
`generate()`, so the loop is ours to speed up; greedy output equals transformers' on the same ids blocked.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import CsmForConditionalGeneration
from transformers.cache_utils import DynamicCache

from voxport.models.sampling import SamplingSettings, block_ids, pick_tokens


@torch.inference_mode()
def generate_frames(
    model: CsmForConditionalGeneration,
    prompt_embeds: torch.Tensor,
    settings: SamplingSettings,
    max_frames: int,
    min_frames: int,
    generator: torch.Generator | None,
    on_frame: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Codes [frames, codebooks] that follow the prompt, up to (not including) an end-of-audio frame."""
    config = model.config
    device = prompt_embeds.device
    eos = config.codebook_eos_token_id
    # Ids at or above the codec's codebook size are padding/specials the codec cannot decode.
    specials = torch.arange(config.codec_config.codebook_size, config.vocab_size, device=device)
    specials_and_eos = torch.cat([specials, torch.tensor([eos], device=device)])

    backbone = model.backbone_model
    cache = DynamicCache(config=backbone.config)
    hidden = backbone(inputs_embeds=prompt_embeds, past_key_values=cache, use_cache=True).last_hidden_state[:, -1]
    frames = []
    for index in range(max_frames):
        blocked = specials_and_eos if index < min_frames else specials
        first = pick_tokens(block_ids(model.lm_head(hidden), blocked), settings, generator)
        frame = _depth_codes(model, hidden, first, specials, settings, generator)
        if bool((frame == eos).all()):
            break
        frames.append(frame)
        if on_frame is not None:
            on_frame(index + 1)
        next_embeds = backbone.embed_tokens(frame.unsqueeze(1))
        hidden = backbone(inputs_embeds=next_embeds, past_key_values=cache, use_cache=True).last_hidden_state[:, -1]
    if not frames:
        return torch.zeros((0, config.num_codebooks), dtype=torch.long, device=device)
    return torch.cat(frames)


def _depth_codes(
    model: CsmForConditionalGeneration,
    hidden: torch.Tensor,
    first: torch.Tensor,
    blocked: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The whole frame [batch, codebooks]: position 0 carries the backbone state, then one codebook a step."""
    depth = model.depth_decoder
    cache = DynamicCache(config=depth.config)
    # Position 0's id is a placeholder: the depth decoder replaces its embedding with `hidden`.
    step_ids = torch.stack([torch.zeros_like(first), first], dim=1)
    codes = [first]
    for _ in range(1, model.config.num_codebooks):
        logits = depth(
            input_ids=step_ids,
            backbone_last_hidden_state=hidden if len(codes) == 1 else None,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        codes.append(pick_tokens(block_ids(logits, blocked), settings, generator))
        step_ids = codes[-1].unsqueeze(1)
    return torch.stack(codes, dim=1)
