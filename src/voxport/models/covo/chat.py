"""Multi-round speech chat: each round is one user clip in, the model's reply out; the KV cache carries over."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from voxport.errors import InputError
from voxport.models.covo.frontend import SpeechClip, prepare_clip
from voxport.models.covo.generation import RepetitionPenalties
from voxport.models.sampling import SamplingSettings
from voxport.runtime.seeding import check_seed, fresh_seed, make_generator
from voxport.runtime.timing import timed

STOP_TOKENS = {"a2t": "<|endoftext|>", "a2ta": "<|im_end|>"}


@dataclass(frozen=True)
class ChatSettings:
    """Round 0 is greedy, as in the reference; later rounds sample (T 0.5, top-p 0.9, top-k 50) unless greedy."""

    mode: str = "a2t"
    max_new_tokens: int = 2048
    greedy: bool = False
    temperature: float = 0.5
    top_p: float = 0.9
    top_k: int = 50
    seed: int | None = None
    penalties: RepetitionPenalties = field(default_factory=RepetitionPenalties)
    persona: str | None = None  # replaces the reference's persona in the system turn (None: the reference's)

    def __post_init__(self):
        if self.mode not in STOP_TOKENS:
            raise InputError(f"unknown mode '{self.mode}': expected {' or '.join(STOP_TOKENS)}")
        if self.max_new_tokens < 1:
            raise InputError(f"max new tokens is {self.max_new_tokens}: expected a positive number")
        if not 0 < self.temperature < math.inf:  # NaN fails this too
            raise InputError(f"temperature is {self.temperature}: expected a positive finite number")
        check_seed(self.seed)
        if not 0 < self.top_p <= 1:
            raise InputError(f"top-p is {self.top_p}: expected a number in (0, 1]")
        if self.top_k < 0:
            raise InputError(f"top-k is {self.top_k}: expected 0 (off) or a positive number")
        if self.persona is not None and not self.persona.strip():
            raise InputError("the system prompt is empty: expected text, or none for the reference's")

    def sampling_for(self, round_index: int) -> SamplingSettings:
        greedy = self.greedy or round_index == 0
        return SamplingSettings(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, greedy=greedy)


@dataclass
class ChatRound:
    index: int
    text: str
    text_token_ids: list[int]
    audio_codes: list[int]  # ids minus the audio-code offset, kept for speech synthesis
    reply_ids: list[int]  # what the cache holds of the reply: every id generated but the last (text and audio)
    audio_features: int  # N: encoder features the user's clip filled
    generation_seconds: float  # encoder, adapter and LLM, device synchronized
    prefill_positions: int  # prompt positions this round added before generating
    cache_positions_before: int  # history the round started from
    stopped: bool  # the stop token ended the round (else max new tokens did)
    speech: np.ndarray | None = field(default=None, repr=False)  # a2ta: the spoken reply, float32 mono
    decode_seconds: float | None = None  # a2ta: token2wav time, device synchronized

    def to_json(self) -> dict:
        """Everything but the waveform itself."""
        return {key: value for key, value in asdict(self).items() if key != "speech"}


class CovoChat:
    """A conversation with one loaded model. Round N prefills only its own prompt: history stays cached."""

    def __init__(self, model, settings: ChatSettings):
        if settings.mode == "a2ta":
            model.speech_decoder()  # fail before the first round, not after it
        self.model = model
        self.settings = settings
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
        text_ids, codes = self.model.split_output(reply_ids[0].tolist())
        history = self.engine.positions
        self.model.check_context(index, history, prompt_ids.shape[1] + reply_ids.shape[1], 1)
        self.model.continue_cache(self.engine, self.model.prompt_embeds(prompt_ids, clip), reply_ids.to(self.model.device))
        self.rounds.append(ChatRound(
            index=index, text=self.model.decode_text(text_ids), text_token_ids=text_ids, audio_codes=codes,
            reply_ids=reply_ids[0].tolist(), audio_features=clip.placeholders, generation_seconds=0.0,
            prefill_positions=prompt_ids.shape[1] + reply_ids.shape[1], cache_positions_before=history, stopped=True,
        ))
        return self.rounds[-1]

    def say(self, audio: SpeechClip | str | Path | np.ndarray,
            on_token: Callable[[list[int]], None] | None = None) -> ChatRound:
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
                prompt_embeds, prompt_ids, self.stop_id, self.settings.max_new_tokens,
                self.settings.sampling_for(index), self.settings.penalties, self.generator, on_token,
            )
        text_ids, codes = self.model.split_output(run.ids)
        speech = None
        if self.settings.mode == "a2ta" and codes:
            with timed(self.model.device, timings, "decode_seconds"):
                speech = self.model.speech_decoder().render(codes, seed=self.seed)
        self.rounds.append(ChatRound(
            index=index, text=self.model.decode_text(text_ids), text_token_ids=text_ids, audio_codes=codes,
            reply_ids=run.ids[:-1],
            audio_features=clip.placeholders, generation_seconds=timings["generation_seconds"],
            prefill_positions=run.prefill_positions, cache_positions_before=history, stopped=run.stopped,
            speech=speech, decode_seconds=timings.get("decode_seconds"),
        ))
        return self.rounds[-1]

    def prompt_ids(self, clip: SpeechClip, round_index: int) -> torch.Tensor:
        """[1, T] ids of round `round_index`'s prompt for `clip` (round 0 opens with the system turn)."""
        return self.model.prompt_ids(clip.placeholders, first_round=round_index == 0, persona=self.settings.persona)
