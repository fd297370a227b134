"""Covo-Audio's token loop in the style of gpt-fast: the Qwen2 LLM over a static KV cache, tokens kept on the
device, the reference's two repetition penalties as vocabulary masks, the stop token checked every few steps.

A decoding step (penalties, pick, one LLM position) is a pure tensor function that `backend.compile_step`
can capture whole; sampling noise is drawn ahead, a chunk of tokens at a time, so nothing in a chunk waits
for the host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from transformers import Qwen2ForCausalLM

from voxport.errors import InputError
from voxport.models.cached_stack import CachedStack, StackCall
from voxport.models.sampling import SamplingSettings, candidates, gumbel_noise, pick_tokens

CHECK_EVERY = 8  # tokens between stop-token checks (the loop's only host syncs)
CACHE_QUANTUM = 256  # the cache grows in steps of whole quanta (each growth may recompile a compiled step)


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


def penalty_state(prompt_ids: torch.Tensor, vocab: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What the penalties look at, on the device: which ids the round has seen [1, vocab] (bool), and the last
    `window` ids [1, window], oldest first (where the prompt is shorter, repeats of its first id stand in:
    the window is a set)."""
    seen = torch.zeros(1, vocab, dtype=torch.bool, device=prompt_ids.device).scatter_(1, prompt_ids, True)
    recent = prompt_ids[:, -window:]
    if recent.shape[1] < window:
        recent = torch.cat([recent[:, :1].expand(1, window - recent.shape[1]), recent], dim=1)
    return seen, recent


def penalize(logits: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make the ids marked in `ids` [batch, vocab] (bool) less likely: positive logits divided by `penalty`,
    negative multiplied, as transformers' repetition penalty does (each id once, however often it came)."""
    if penalty == 1.0:
        return logits
    return torch.where(ids, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


class TokenEngine:
    """One conversation's LLM state: a static KV cache (grown in quanta when a round needs more room) and how
    many of its positions hold history. Prompts are prefilled into it; tokens are generated from it."""

    def __init__(
        self,
        llm: Qwen2ForCausalLM,
        grouped_attention: bool,
        capacity: int = CACHE_QUANTUM,
        compile_step: Callable[[Callable], Callable | None] | None = None,
        pick: Callable | None = None,
    ):
        """`pick` replaces the penalised greedy or sampled choice (`TokenEngine.pick`'s arguments): teacher
        forcing passes known tokens."""
        if pick is not None:
            self.pick = pick
        self.limit = llm.config.max_position_embeddings
        self.stack = CachedStack(llm.model, 1, min(_quanta(capacity), self.limit), grouped_attention)
        embedding, head = llm.model.embed_tokens, llm.lm_head
        self.vocab = head.out_features
        # Weights used directly (one kernel each); through the modules where they stream from the checkpoint
        # in row chunks (runtime.streaming), their weights then absent until read.
        self.embed: Callable[[torch.Tensor], torch.Tensor] = (
            embedding if embedding.weight.is_meta else partial(F.embedding, weight=embedding.weight)
        )
        self.project: Callable[[torch.Tensor], torch.Tensor] = (
            head if head.weight.is_meta else partial(self.stack.linear, weight=head.weight)
        )
        self.positions = 0  # cache rows that hold history
        self.run_step = (compile_step(self.step) if compile_step else None) or self.step

    def reserve(self, positions: int) -> None:
        """Room for `positions` more positions after the history, within the model's context."""
        needed = self.positions + positions
        if needed > self.limit:
            raise InputError(
                f"history ({self.positions}) plus {positions} new positions exceeds the model's "
                f"context of {self.limit} positions"
            )
        if needed > self.stack.length:
            self.stack.grow(min(max(_quanta(needed), 2 * self.stack.length), self.limit))

    @torch.inference_mode()
    def prefill(self, embeds: torch.Tensor) -> torch.Tensor:
        """Append input embeddings [1, T, hidden] to the history; the logits after them [1, vocab]."""
        self.reserve(embeds.shape[1])
        hidden = self.stack(*self._prefill_call(embeds))
        return self.project(hidden[:, -1])

    def _prefill_call(self, embeds: torch.Tensor) -> StackCall:
        """The stack call that appends `embeds` [1, T, hidden] to the history (room reserved); the history then
        includes them."""
        start, length = self.positions, embeds.shape[1]
        end = start + length
        queries = torch.arange(start, end, device=embeds.device)
        # From an empty cache, plain causal attention (as transformers computes a first prompt); after
        # history, each query sees every earlier position.
        mask = None if start == 0 else (self.stack.cache_index[None, :end] <= queries[:, None])[None, None]
        self.positions = end
        return StackCall(embeds, self.stack.rope(queries.unsqueeze(0)), queries, mask, end)

    def _step_call(self, token: torch.Tensor, position: torch.Tensor) -> StackCall:
        """The stack call that runs `token` [1] at cache row `position` (a 0-d tensor)."""
        mask = (self.stack.cache_index <= position)[None, None, None, :]
        return StackCall(self.embed(token.view(1, 1)), self.stack.rope(position.view(1, 1)), position.view(1), mask)

    @torch.inference_mode()
    def teacher_forced(self, rounds: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Logits [steps, vocab] of known replies, round after round (each round's prompt embeddings [1, T,
        hidden] and reply ids [n]), as `generate` computes them when it picks the known ids: the same stack
        calls, but run layer-major (`CachedStack.layer_major`) and projected together, so a model whose layers
        and head stream from the checkpoint reads each once, not once per token."""
        self.reserve(sum(embeds.shape[1] + len(reply) for embeds, reply in rounds))
        calls = []
        for embeds, reply in rounds:
            calls.append(self._prefill_call(embeds))
            positions = torch.arange(self.positions, self.positions + len(reply) - 1, device=embeds.device)
            calls += [self._step_call(token, position) for token, position in zip(reply[:-1], positions)]
            self.positions += len(reply) - 1  # the last reply id is not run, as in `generate`
        hidden = self.stack.layer_major(calls)
        return self.project(torch.cat([output[:, -1] for output in hidden])).float()

    def step(
        self,
        logits: torch.Tensor,
        seen: torch.Tensor,
        recent: torch.Tensor,
        position: torch.Tensor,
        sampling: SamplingSettings,
        penalties: RepetitionPenalties,
        noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pick a token from `logits` [1, vocab] and run it at cache row `position` (a 0-d tensor): the token [1],
        the logits after it and the penalty state (see `penalty_state`) after it. Pure tensor code: one graph
        for compile_step."""
        token = self.pick(logits, seen, recent, sampling, penalties, noise)
        hidden = self.stack(*self._step_call(token, position))
        seen = seen.scatter(1, token.view(1, 1), True)
        recent = torch.cat([recent[:, 1:], token.view(1, 1)], dim=1)
        return token, self.project(hidden[:, -1]), seen, recent

    def pick(
        self,
        logits: torch.Tensor,
        seen: torch.Tensor,
        recent: torch.Tensor,
        sampling: SamplingSettings,
        penalties: RepetitionPenalties,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """The next token [1]: both penalties in the reference's order, then greedy or Gumbel-max sampling."""
        scores = penalize(logits.float(), seen, penalties.penalty)
        scores = penalize(scores, torch.zeros_like(seen).scatter_(1, recent, True), penalties.windowed_penalty)
        return pick_tokens(scores, sampling, gumbel=noise)

    @torch.inference_mode()
    def generate(
        self,
        prompt_embeds: torch.Tensor,
        prompt_ids: torch.Tensor,
        stop_id: int,
        max_new_tokens: int,
        sampling: SamplingSettings,
        penalties: RepetitionPenalties,
        generator: torch.Generator | None,
        on_token: Callable[[list[int]], None] | None = None,
        step: Callable | None = None,
    ) -> TokenRun:
        """Continue the history with the prompt, then pick tokens until `stop_id` or `max_new_tokens`;
        `on_token(ids)` hears the ids picked so far after each chunk of tokens (it may raise to stop the run
        there); `step` replaces `self.step` (e.g. captured otherwise).

        As in the reference, the last token picked is not part of the history: the cache ends just before it
        and the next round's prompt follows there.
        """
        step = step or self.run_step
        self.reserve(prompt_embeds.shape[1] + max_new_tokens)
        logits = self.prefill(prompt_embeds)
        positions = torch.arange(self.positions, self.positions + max_new_tokens, device=prompt_embeds.device)
        seen, recent = penalty_state(prompt_ids, self.vocab, penalties.window)
        ids: list[int] = []
        while len(ids) < max_new_tokens:
            size = min(CHECK_EVERY, max_new_tokens - len(ids))
            noise = (
                None
                if sampling.greedy
                else gumbel_noise(
                    (size, 1, candidates(sampling, self.vocab)), sampling, generator, prompt_embeds.device
                )
            )
            tokens = []
            for offset in range(size):
                index = len(ids) + offset
                chosen = None if noise is None else noise[offset]
                if index == max_new_tokens - 1:  # the last token is not run through the model
                    tokens.append(self.pick(logits, seen, recent, sampling, penalties, chosen))
                else:
                    token, logits, seen, recent = step(
                        logits, seen, recent, positions[index], sampling, penalties, chosen
                    )
                    tokens.append(token.clone())  # a CUDA graph's next replay overwrites its outputs
            chunk = torch.cat(tokens).tolist()  # the one host sync of a chunk
            if stop_id in chunk:
                chunk = chunk[: chunk.index(stop_id) + 1]
            ids += chunk
            if on_token is not None:
                on_token(ids)
            if chunk[-1] == stop_id:
                break
        self.positions += len(ids) - 1  # rows run after the stop token lie past the history: ignored, overwritten
        return TokenRun(ids=ids, prefill_positions=prompt_embeds.shape[1], stopped=ids[-1] == stop_id)


def _quanta(positions: int) -> int:
    return -(-positions // CACHE_QUANTUM) * CACHE_QUANTUM
