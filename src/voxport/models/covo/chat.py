"""Multi-round speech chat: each round is one user clip in, the model's reply out; the KV cache carries over."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from voxport.models.base import ChatRound, ChatSettings
from voxport.models.covo.frontend import SpeechClip, prepare_clip
from voxport.models.covo.generation import RepetitionPenalties
from voxport.models.sampling import SamplingSettings
from voxport.runtime.seeding import fresh_seed, make_generator
from voxport.runtime.timing import timed

STOP_TOKENS = {"a2t": "<|endoftext|>", "a2ta": "<|im_end|>"}


# What Covo-Audio-Chat does where a request leaves the choice open, as the reference does: round 0 greedy,
# later rounds sampled at temperature 0.5 among the top-p 0.9 of the 50 best, with two repetition penalties.
CHAT_DEFAULTS = ChatSettings(max_new_tokens=2048, temperature=0.5, top_p=0.9, top_k=50)
PENALTIES = RepetitionPenalties()


def round_sampling(settings: ChatSettings, round_index: int) -> SamplingSettings:
    """How round `round_index` picks its tokens: round 0 is greedy, as in the reference; later rounds sample
    unless the settings are greedy."""
    chosen = settings.with_defaults(CHAT_DEFAULTS)
    assert chosen.temperature is not None and chosen.top_k is not None and chosen.top_p is not None
    return SamplingSettings(
        temperature=chosen.temperature, top_k=chosen.top_k, top_p=chosen.top_p, greedy=chosen.greedy or round_index == 0
    )


class CovoChat:
    """A conversation with one loaded model. Round N prefills only its own prompt: history stays cached."""

    def __init__(self, model, settings: ChatSettings):
        if settings.speaks:
            model.speech_decoder()  # fail before the first round, not after it
        self.model = model
        self.settings = settings.with_defaults(CHAT_DEFAULTS)
        self.seed = settings.seed if settings.seed is not None else fresh_seed()
        self.generator = make_generator(model.device, self.seed)
        self.engine = model.token_engine()
        self.rounds: list[ChatRound] = []
        self.stop_id = model.token_id(STOP_TOKENS[settings.mode])

    def remember(self, audio: SpeechClip | str | Path | np.ndarray, reply: str | Sequence[int]) -> ChatRound:
        """Put an earlier round, the user's clip and the reply given then, into the cache without generating:
        how a conversation's history is restored (an HTTP client sends it with every request).

        `reply` is the reply's text, or the `reply_ids` of the round that made it: then the cache holds what
        it held after that round, its speech codes included, so the model hears its own earlier speech.
        """
        clip = audio if isinstance(audio, SpeechClip) else prepare_clip(audio)
        index = len(self.rounds)
        prompt_ids = self.prompt_ids(clip, index)
        if isinstance(reply, str):
            reply_ids = self.model.tokenizer(reply, add_special_tokens=False, return_tensors="pt").input_ids
        else:
            reply_ids = torch.tensor([list(reply)], dtype=torch.long).view(1, -1)
        history = self.engine.positions
        self.model.check_context(index, history, prompt_ids.shape[1] + reply_ids.shape[1], 1)
        self.model.continue_cache(
            self.engine, self.model.prompt_embeds(prompt_ids, clip), reply_ids.to(self.model.device)
        )
        ids = reply_ids[0].tolist()
        return self._record(clip, ids, ids, history, prefill_positions=prompt_ids.shape[1] + reply_ids.shape[1])

    def say(
        self, audio: SpeechClip | str | Path | np.ndarray, on_token: Callable[[list[int]], None] | None = None
    ) -> ChatRound:
        """Answer one user clip; `on_token(ids)` hears the reply's ids so far after each chunk of tokens."""
        clip = audio if isinstance(audio, SpeechClip) else prepare_clip(audio)
        index = len(self.rounds)
        prompt_ids = self.prompt_ids(clip, index)
        history = self.engine.positions
        self.model.check_context(index, history, prompt_ids.shape[1], self.settings.max_new_tokens)
        timings: dict[str, float] = {}
        with timed(self.model.device, timings, "generation_seconds"):
            prompt_embeds = self.model.prompt_embeds(prompt_ids, clip)
            run = self.engine.generate(
                prompt_embeds,
                prompt_ids,
                self.stop_id,
                self.settings.max_new_tokens,
                round_sampling(self.settings, index),
                PENALTIES,
                self.generator,
                on_token,
            )
        text_ids, codes = self.model.split_output(run.ids)
        speech = None
        if self.settings.speaks and codes:
            with timed(self.model.device, timings, "decode_seconds"):
                speech = self.model.speech_decoder().render(codes, seed=self.seed)
        return self._record(
            clip,
            run.ids,
            run.ids[:-1],
            history,
            prefill_positions=run.prefill_positions,
            stopped=run.stopped,
            generation_seconds=timings["generation_seconds"],
            speech=speech,
            decode_seconds=timings.get("decode_seconds"),
        )

    def _record(
        self,
        clip: SpeechClip,
        output_ids: list[int],
        reply_ids: list[int],
        history: int,
        prefill_positions: int,
        stopped: bool = True,
        generation_seconds: float = 0.0,
        speech: np.ndarray | None = None,
        decode_seconds: float | None = None,
    ) -> ChatRound:
        """The round just put into the cache (after `history` cached positions), kept in the conversation.
        `output_ids` are all the round's ids, `reply_ids` those the cache holds (the stop token is not)."""
        text_ids, codes = self.model.split_output(output_ids)
        self.rounds.append(
            ChatRound(
                index=len(self.rounds),
                text=self.model.decode_text(text_ids),
                text_token_ids=text_ids,
                audio_codes=codes,
                reply_ids=reply_ids,
                audio_features=clip.placeholders,
                generation_seconds=generation_seconds,
                prefill_positions=prefill_positions,
                cache_positions_before=history,
                stopped=stopped,
                speech=speech,
                decode_seconds=decode_seconds,
            )
        )
        return self.rounds[-1]

    def prompt_ids(self, clip: SpeechClip, round_index: int) -> torch.Tensor:
        """[1, T] ids of round `round_index`'s prompt for `clip` (round 0 opens with the system turn)."""
        return self.model.prompt_ids(clip.placeholders, first_round=round_index == 0, persona=self.settings.persona)
