"""Tencent Covo-Audio-Chat on any device: load once (meta init, strict shard loading), then chat."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import Qwen2Tokenizer

from voxport.errors import CheckpointError, InputError
from voxport.models.covo.chat import STOP_TOKENS, ChatSettings, CovoChat
from voxport.models.covo.config import CovoConfig
from voxport.models.covo.frontend import INPUT_RATE, SpeechClip, clip_log_mels, prepare_clip
from voxport.models.covo.generation import RepetitionPenalties, TokenEngine
from voxport.models.covo.network import CovoAudioNetwork
from voxport.models.covo.prompt import AUDIO_END, AUDIO_SLOT, AUDIO_START, round_prompt
from voxport.models.covo.token2wav import Token2Wav
from voxport.models.sampling import SamplingSettings
from voxport.runtime.checkpoints import resolve_checkpoint
from voxport.runtime.devices import backend_for
from voxport.runtime.timing import timed
from voxport.runtime.weights import load_weights_strict, safetensors_files

CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja", "token2wav/*", "token2wav/prompt/*"]
BENCH_SECONDS = {"short": 3.0, "medium": 10.0, "long": 25.0}
NEVER = -1  # a stop id no token has: fixed-length runs
REQUIRED_TOKENS = [AUDIO_START, AUDIO_SLOT, AUDIO_END, "<|im_start|>", *STOP_TOKENS.values()]


@dataclass(frozen=True)
class ChatRequest:
    """One conversation: a user clip per round, in order."""

    audios: tuple[SpeechClip | str | Path | np.ndarray, ...]
    settings: ChatSettings = ChatSettings()


@dataclass(frozen=True)
class CovoExample:
    """A fixed clip for teacher-forced checks."""

    clip: SpeechClip


class CovoAudioChat:
    family = "covo"
    step_unit = "token"

    def __init__(self, network: CovoAudioNetwork, tokenizer, config: CovoConfig, device: torch.device,
                 dtype: torch.dtype, timings: dict[str, float], directory: Path):
        self.network, self.tokenizer, self.config = network, tokenizer, config
        self.device, self.dtype, self.directory = device, dtype, directory
        self.init_seconds, self.load_seconds = timings["init_seconds"], timings["load_seconds"]
        self.slot_id = self.token_id(AUDIO_SLOT)
        self.backend = backend_for(device)
        self._compile = False
        self._speech: Token2Wav | None = None
        self.speech_load_seconds: float | None = None

    def load_speech_decoder(self, prompt_dir: Path | None = None) -> Token2Wav:
        """token2wav from the checkpoint's token2wav/ folder, with the voice in `prompt_dir` (default its prompt/)."""
        timings: dict[str, float] = {}
        with timed(self.device, timings, "speech_load_seconds"):
            self._speech = Token2Wav.load(self.directory / "token2wav", self.device, self.dtype, prompt_dir)
        self.speech_load_seconds = timings["speech_load_seconds"]
        return self._speech

    def speech_decoder(self) -> Token2Wav:
        """The loaded token2wav (loading it with the default voice on first use)."""
        return self._speech if self._speech is not None else self.load_speech_decoder()

    @classmethod
    def load(cls, source: str | Path, device: torch.device, dtype: torch.dtype) -> CovoAudioChat:
        path = resolve_checkpoint(source, allow_patterns=CHECKPOINT_FILES)
        config = CovoConfig.from_directory(path)
        tokenizer = _load_tokenizer(path, config)
        files = safetensors_files(path)
        timings: dict[str, float] = {}
        with timed(device, timings, "init_seconds"), init_empty_weights(include_buffers=False):
            network = CovoAudioNetwork(config)
        with timed(device, timings, "load_seconds"):
            load_weights_strict(network, files, device, dtype)
            network.to(device).eval()  # moves the buffers built on the host (rotary frequencies)
        return cls(network, tokenizer, config, device, dtype, timings, path)

    def compile(self) -> None:
        """Capture the per-token decoding step as one compiled graph (CUDA graphs) where the device backend can."""
        self._compile = True

    def token_engine(self) -> TokenEngine:
        """A fresh LLM state (static KV cache) for one conversation, its step compiled if `compile()` was asked."""
        return TokenEngine(self.network.llm, self.backend.grouped_query_attention,
                           compile_step=self.backend.compile_step if self._compile else None)

    def chat(self, settings: ChatSettings = ChatSettings()) -> CovoChat:
        return CovoChat(self, settings)

    def generate(self, request: ChatRequest) -> list:
        conversation = self.chat(request.settings)
        return [conversation.say(audio) for audio in request.audios]

    def token_id(self, token: str) -> int:
        return self.tokenizer.convert_tokens_to_ids(token)

    def prompt_ids(self, placeholders: int, first_round: bool, persona: str | None = None) -> torch.Tensor:
        text = round_prompt(placeholders, first_round, persona)
        return self.tokenizer(text, return_tensors="pt").input_ids.to(self.device)

    @torch.inference_mode()
    def prompt_embeds(self, prompt_ids: torch.Tensor, clip: SpeechClip) -> torch.Tensor:
        """Token embeddings with the clip's first N audio features in the N placeholder slots."""
        return self._fill_slots(prompt_ids, self.audio_features(clip))

    def _fill_slots(self, prompt_ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Embed `prompt_ids`, then put the first N `features` [frames, hidden] in its N placeholders."""
        embeds = self.network.llm.get_input_embeddings()(prompt_ids)
        slots = prompt_ids == self.slot_id
        embeds[slots] = features[: int(slots.sum())].to(embeds.dtype)
        return embeds

    @torch.inference_mode()
    def continue_cache(self, engine: TokenEngine, prompt_embeds: torch.Tensor, reply_ids: torch.Tensor) -> None:
        """Run a prompt and a known reply through the LLM into `engine`'s history, generating nothing."""
        replies = self.network.llm.get_input_embeddings()(reply_ids)
        engine.prefill(torch.cat([prompt_embeds, replies], dim=1))

    @torch.inference_mode()
    def audio_features(self, clip: SpeechClip) -> torch.Tensor:
        mels = clip_log_mels(clip, self.config.encoder.num_mel_bins, self.device)
        return self.network.encode_audio(mels)

    def split_output(self, ids: list[int]) -> tuple[list[int], list[int]]:
        """Text ids (below the audio-code offset) and audio codes (id - offset), each in order."""
        offset = self.config.audio_token_index
        return [i for i in ids if i < offset], [i - offset for i in ids if i >= offset]

    def decode_text(self, text_ids: list[int]) -> str:
        return self.tokenizer.decode(text_ids, skip_special_tokens=True)

    def check_context(self, round_index: int, history: int, prompt: int, max_new_tokens: int) -> None:
        limit = self.config.llm.max_position_embeddings
        if history + prompt > limit:
            raise InputError(
                f"round {round_index}: history ({history}) plus the prompt ({prompt} positions) exceeds the model's "
                f"context of {limit} positions: use shorter audio or fewer rounds"
            )
        if history + prompt + max_new_tokens > limit:
            raise InputError(
                f"round {round_index}: history ({history}) + prompt ({prompt}) + max new tokens ({max_new_tokens}) "
                f"exceeds the model's context of {limit} positions: lower --max-new-tokens"
            )

    def example_inputs(self) -> CovoExample:
        """Three seconds of a fixed harmonic glide with a little seeded noise: speech-like, always the same."""
        return CovoExample(prepare_clip(_voice_like(3.0)))

    def bench_inputs(self, size: str) -> CovoExample:
        """A fixed user turn of a given length class (short 3 s, medium 10 s, long 25 s) for benchmarks."""
        return CovoExample(prepare_clip(_voice_like(BENCH_SECONDS[size])))

    @torch.no_grad()
    def forward_logits(self, inputs: CovoExample) -> dict[str, torch.Tensor]:
        """Every stage on the example: log-mels, encoder output, adapter output, and the LLM's prompt logits."""
        mels = clip_log_mels(inputs.clip, self.config.encoder.num_mel_bins, self.device)
        encoded = self.network.encoder(mels.to(self.dtype)).last_hidden_state
        adapted = self.network.audio_adapter(encoded)
        prompt_ids = self.prompt_ids(inputs.clip.placeholders, first_round=True)
        logits = self.network.llm(inputs_embeds=self._fill_slots(prompt_ids, adapted.flatten(0, 1))).logits
        return {"mel": mels, "encoder": encoded.float(), "adapter": adapted.float(), "logits": logits.float()}

    @torch.no_grad()
    def token_logits(self, inputs: CovoExample, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [tokens, vocab] predicting each of `tokens` after the round-0 prompt of `inputs`."""
        prompt_ids = self.prompt_ids(inputs.clip.placeholders, first_round=True)
        prompt = self.prompt_embeds(prompt_ids, inputs.clip)
        replies = self.network.llm.get_input_embeddings()(tokens[:-1].to(self.device).view(1, -1))
        logits = self.network.llm(inputs_embeds=torch.cat([prompt, replies], dim=1)).logits
        return logits[0, prompt_ids.shape[1] - 1 :].float()

    def greedy_tokens(self, inputs: CovoExample, steps: int) -> torch.Tensor:
        """`steps` plain greedy tokens after the round-0 prompt (no penalties, the stop token ignored)."""
        run = self._fixed_run(inputs, steps, SamplingSettings(greedy=True), RepetitionPenalties(1.0, 1.0, 1))
        return torch.tensor(run.ids)

    def tokens_to_audio(self, tokens: torch.Tensor) -> None:
        """Text replies have no audio of their own."""
        return None

    def run_fixed(self, inputs: CovoExample, steps: int) -> None:
        """A round-0 reply of exactly `steps` tokens: encoder, prefill, then greedy decoding with penalties."""
        self._fixed_run(inputs, steps, ChatSettings().sampling_for(0), RepetitionPenalties())
        return None

    def weight_bytes_per_step(self) -> int:
        """Weight bytes one token reads: every LLM layer, the final norm and the output head."""
        llm = self.network.llm
        return sum(p.numel() * p.element_size() for module in (llm.model.layers, llm.model.norm, llm.lm_head)
                   for p in module.parameters())

    def _fixed_run(self, inputs: CovoExample, steps: int, sampling, penalties):
        prompt_ids = self.prompt_ids(inputs.clip.placeholders, first_round=True)
        embeds = self.prompt_embeds(prompt_ids, inputs.clip)
        return self.token_engine().generate(embeds, prompt_ids, NEVER, steps, sampling, penalties, None)

    def named_modules(self) -> Iterator[tuple[str, nn.Module]]:
        return self.network.named_modules()


def _voice_like(seconds: float) -> np.ndarray:
    """A fixed harmonic glide with a little seeded noise at 24 kHz: speech-like, always the same."""
    t = np.arange(int(seconds * INPUT_RATE)) / INPUT_RATE
    pitch = 2 * np.pi * (140 * t + 20 * t**2)
    signal = sum(0.2 / k * np.sin(k * pitch) for k in range(1, 6))
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.shape)
    return (signal + noise).astype(np.float32)


def _load_tokenizer(path: Path, config: CovoConfig):
    try:
        tokenizer = Qwen2Tokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load the tokenizer of {path}: {str(error).splitlines()[0]}") from None
    vocabulary = tokenizer.get_vocab()
    missing = [token for token in REQUIRED_TOKENS if token not in vocabulary]
    if missing:
        raise CheckpointError(f"the tokenizer of {path} lacks {', '.join(missing)}: not a Covo-Audio tokenizer")
    if len(tokenizer) != config.audio_token_index:
        raise CheckpointError(
            f"{path}: tokenizer has {len(tokenizer)} tokens but audio codes start at id {config.audio_token_index}"
        )
    return tokenizer
