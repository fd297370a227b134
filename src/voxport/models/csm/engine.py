"""CSM generation at the speed of memory, in the style of gpt-fast.

The backbone and the depth decoder run as `CachedStack`s over static, preallocated KV caches, so a frame
is a fixed sequence of kernels: the backbone's step, then the depth decoder's 31 steps, with no nested
generate() and no host sync. Sampling draws its (Gumbel) noise ahead, a chunk of frames at a time, so the
frame step is a pure tensor function that torch.compile (and CUDA graphs) can capture whole. End of audio is
checked once per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CsmForConditionalGeneration

from voxport.models.cached_stack import CachedStack, fuse_projections
from voxport.models.sampling import RowNoise, SamplingSettings, candidates, pick_tokens
from voxport.runtime.devices import backend_for


def ends_audio(frames: torch.Tensor, eos: int) -> torch.Tensor:
    """Which frames [..., codebooks] end the speech: the official CSM rule (SesameAILabs/csm generator.py
    stops on a frame whose codebooks are all end-of-audio, id 0). Such a frame is not audio."""
    return (frames == eos).all(dim=-1)


def arrange_weights(model: CsmForConditionalGeneration) -> None:
    """The engine's weight layout, set once (at load): q/k/v and gate/up fused in both stacks, and each codebook
    head stored as [vocab, hidden] rows, the layout a matrix-vector product streams fastest (about 1.6x a
    transposed view on CPU). The modules keep views of the same storage and work as before: no extra memory."""
    fuse_projections(model.backbone_model)
    fuse_projections(model.depth_decoder.model)
    head = model.depth_decoder.codebooks_head
    if not head.weight.transpose(1, 2).is_contiguous():
        with torch.inference_mode(False), torch.no_grad():
            rows = head.weight.detach().transpose(1, 2).contiguous()
            head.weight = nn.Parameter(rows.transpose(1, 2), requires_grad=False)


@dataclass
class FrameChunk:
    codes: torch.Tensor  # [batch, frames, codebooks] on the device
    lengths: torch.Tensor  # [batch] frames before each row's end of audio so far (the chunk's end if none)
    finished: bool  # every row has ended


class CsmEngine:
    """Frames for a batch of prompts, on the weights of one loaded CSM model."""

    def __init__(self, model: CsmForConditionalGeneration, batch: int, pick: Callable | None = None):
        """`pick(logits, settings, noise, step)` chooses codebook `step`'s code for each row from its logits
        [batch, codebook_size]: sampled (or greedy) as `settings` say unless given (teacher forcing gives
        known codes)."""
        config = model.config
        arrange_weights(model)
        self.model, self.config, self.batch = model, config, batch
        self.pick = pick or self._sample
        device = model.lm_head.weight.device
        grouped = backend_for(device).grouped_query_attention
        self.backbone = CachedStack(model.backbone_model, batch, config.max_position_embeddings, grouped)
        self.depth = CachedStack(model.depth_decoder.model, batch, config.num_codebooks, grouped)
        self.linear = self.backbone.linear
        self.codebook_size = config.codec_config.codebook_size
        # Ids at or above the codec's codebook size are specials the codec cannot decode: logits are cut
        # there. End of audio (id 0) is blocked in codebook 0 while frames are still too few.
        self.eos_blocked = torch.zeros(self.codebook_size, device=device).index_fill(
            0, torch.tensor([config.codebook_eos_token_id], device=device), float("-inf")
        )
        self.nothing_blocked = torch.zeros_like(self.eos_blocked)
        depth_model = model.depth_decoder.model
        if any(module.bias is not None for module in (model.lm_head, depth_model.inputs_embeds_projector)):
            raise ValueError("the engine expects CSM's bias-free output head and depth projector")
        self.depth_embedding, self.depth_projector = (
            depth_model.embed_tokens.weight,
            depth_model.inputs_embeds_projector.weight,
        )
        # Only the codec's ids are ever picked: the heads' rows past them (specials) are not read at all.
        self.lm_head = model.lm_head.weight[: self.codebook_size]
        self.depth_heads = [
            head[: self.codebook_size] for head in model.depth_decoder.codebooks_head.weight.transpose(1, 2).unbind(0)
        ]
        slots = torch.arange(config.num_codebooks, device=device)
        vocab = config.vocab_size
        # Depth step k (1..31) embeds codebook k's code (its own rows of the table), writes cache row k + 1
        # and sees rows 0..k + 1: all constant, so computed once.
        self.depth_first = (self.depth_embedding[:vocab], self.depth.rope(slots[:2].expand(batch, 2)), slots[:2])
        self.depth_steps = [
            (
                self.depth_embedding[step * vocab : (step + 1) * vocab],
                self.depth.rope(slots[step + 1 : step + 2].expand(batch, 1)),
                slots[step + 1 : step + 2],
            )
            for step in range(1, config.num_codebooks - 1)
        ]

    def prefill(self, embeds: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Run left-padded prompts [batch, T, hidden] (row b's prompt starts at starts[b]); the last hidden state
        [batch, hidden]."""
        length = embeds.shape[1]
        queries = keys = torch.arange(length, device=embeds.device)  # the prompt fills cache rows 0..length-1
        real = keys[None, None, :] >= starts[:, None, None]
        own = keys[None, None, :] == queries[None, :, None]  # padding rows see themselves only: no empty softmax
        mask = (keys[None, None, :] <= queries[None, :, None]) & (real | own)
        positions = (queries[None, :] - starts[:, None]).clamp(min=0)
        return self.backbone(embeds, self.backbone.rope(positions), queries, mask.unsqueeze(1), visible=length)[:, -1]

    def frame(
        self,
        hidden: torch.Tensor,
        slot: torch.Tensor,
        starts: torch.Tensor,
        early: torch.Tensor,
        settings: SamplingSettings,
        noise: torch.Tensor | None,
        visible: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame from the backbone state: codes [batch, codebooks] and the backbone state after them.

        `slot` is the cache row this frame's input goes to, `early` [batch] whether end of audio is still forbidden,
        `noise` the frame's pre-drawn (temperature-scaled) Gumbel noise [codebooks, batch, candidates], None
        when greedy. `visible` (slot + 1, eager runs only: a captured graph keeps fixed shapes) limits the
        backbone's attention to the cache rows written so far instead of the whole context.
        """
        first = self.linear(hidden, self.lm_head)
        first = first + torch.where(early.unsqueeze(-1), self.eos_blocked, self.nothing_blocked)
        codes = [self.pick(first, settings, noise, 0).unsqueeze(1)]  # [batch, 1] each: the depth steps' shape
        table, rope, slots = self.depth_first
        inputs = torch.cat([hidden.unsqueeze(1), F.embedding(codes[0], table)], dim=1)
        state = self.depth(self.linear(inputs, self.depth_projector), rope, slots, None, visible=2)[:, -1:]
        for step, (table, rope, slots) in enumerate(self.depth_steps, start=1):
            codes.append(self.pick(self.linear(state, self.depth_heads[step - 1]), settings, noise, step))
            state = self.depth(
                self.linear(F.embedding(codes[-1], table), self.depth_projector), rope, slots, None, visible=step + 2
            )
        codes.append(self.pick(self.linear(state, self.depth_heads[-1]), settings, noise, len(self.depth_heads)))
        frame = torch.cat(codes, dim=1)
        keys = self.backbone.cache_index[:visible]
        mask = ((keys[None, :] <= slot) & (keys[None, :] >= starts[:, None]))[:, None, None, :]
        embedded = self.model.backbone_model.embed_tokens(frame.unsqueeze(1))
        rope = self.backbone.rope((slot - starts)[:, None])
        return frame, self.backbone(embedded, rope, slot.view(1), mask, visible=visible)[:, -1]

    def _sample(self, logits: torch.Tensor, settings: SamplingSettings, noise: torch.Tensor | None, step: int):
        """A code per row (and position) from logits over the codec's ids (leaving specials out blocks them)."""
        gumbel = None if noise is None else noise[step].view(*logits.shape[:-1], -1)
        return pick_tokens(logits if logits.dtype == torch.float32 else logits.float(), settings, gumbel=gumbel)

    @torch.inference_mode()
    def run(
        self,
        embeds: torch.Tensor,
        starts: torch.Tensor,
        settings: SamplingSettings,
        max_frames: list[int],
        min_frames: list[int],
        generators: list[torch.Generator] | None,
        chunk_frames: Callable[[int], int],
        step: Callable | None = None,
    ) -> Iterator[FrameChunk]:
        """Generate frame chunks until every row has ended; `chunk_frames(done)` sizes each chunk.

        Row r ends at its end of audio or after `max_frames[r]` frames, and cannot end before `min_frames[r]`,
        so rows of different lengths share one batch. `generators` holds one generator per row (None when
        greedy): row r samples from its own, so its codes do not depend on the other rows of the batch.
        """
        step = step or self.frame
        eager = step == self.frame  # attends over the rows written so far; a captured graph keeps fixed shapes
        device = embeds.device
        batch, prompt = embeds.shape[0], embeds.shape[1]
        eos = self.config.codebook_eos_token_id
        hidden = self.prefill(embeds, starts)
        longest = max(max_frames)
        limits = torch.tensor(max_frames, device=device)
        slots = torch.arange(prompt, prompt + longest, device=device)  # indexed per frame: no host copies
        early = torch.arange(longest, device=device)[:, None] < torch.tensor(min_frames, device=device)[None, :]
        ended = torch.zeros(batch, dtype=torch.bool, device=device)
        lengths = limits.clone()
        noise_source = (
            None
            if settings.greedy
            else RowNoise(
                generators, self.config.num_codebooks, candidates(settings, self.codebook_size), settings, device
            )
        )
        done = 0
        while done < longest:
            size = min(chunk_frames(done), longest - done)
            noise = None if noise_source is None else noise_source.take(size)
            frames = []
            for offset in range(size):
                index = done + offset
                frame, hidden = step(
                    hidden,
                    slots[index],
                    starts,
                    early[index],
                    settings,
                    None if noise is None else noise[offset],
                    **({"visible": prompt + index + 1} if eager else {}),
                )
                at_end = ends_audio(frame, eos) & ~ended
                lengths = torch.where(at_end, index, lengths)
                ended = ended | at_end | (limits <= index + 1)
                frames.append(frame.clone())  # a captured graph's next replay overwrites its outputs
            done += size
            finished = bool(ended.all())  # the one host sync of a chunk
            yield FrameChunk(torch.stack(frames, dim=1), torch.clamp(lengths, max=done), finished)
            if finished:
                return
