"""Tencent Covo-Audio-Chat on any device: load once (meta init, strict shard loading), then chat."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import Qwen2Tokenizer

from voxport.audio.features import whisper_log_mel
from voxport.errors import CheckpointError, InputError, first_line
from voxport.models.base import ChatSettings, Stage, repeated_blocks
from voxport.models.cached_stack import fuse_projections
from voxport.models.covo.chat import CHAT_DEFAULTS, PENALTIES, STOP_TOKENS, CovoChat, round_sampling
from voxport.models.covo.config import CovoConfig
from voxport.models.covo.frontend import INPUT_RATE, SpeechClip, clip_log_mels, prepare_clip
from voxport.models.covo.generation import RepetitionPenalties, TokenEngine
from voxport.models.covo.network import CovoAudioNetwork
from voxport.models.covo.prompt import AUDIO_END, AUDIO_SLOT, AUDIO_START, round_prompt
from voxport.models.covo.token2wav import Token2Wav
from voxport.models.sampling import SamplingSettings
from voxport.runtime.checkpoints import require_tokenizer_files, resolve_checkpoint
from voxport.runtime.devices import backend_for
from voxport.runtime.seeding import make_generator
from voxport.runtime.streaming import CheckpointReader, StreamedWeights, Streaming, streamed_unit
from voxport.runtime.timing import timed
from voxport.runtime.weights import load_weights_strict, safetensors_files

CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja", "token2wav/*", "token2wav/prompt/*"]
BENCH_SECONDS = {"short": 3.0, "medium": 10.0, "long": 25.0}
NEVER = -1  # a stop id no token has: fixed-length runs
REQUIRED_TOKENS = [AUDIO_START, AUDIO_SLOT, AUDIO_END, "<|im_start|>", *STOP_TOKENS.values()]


@dataclass(frozen=True)
class CovoExample:
    """A fixed clip for teacher-forced checks; accuracy adds a second round and the replies of both rounds."""

    clip: SpeechClip
    follow_up: SpeechClip | None = None
    replies: tuple[str, ...] = ()


# Accuracy's default examples: replies in English and Chinese, and a long first turn (over 300 positions).
ACCURACY_EXAMPLES = {
    "english": (3.0, ("Sure, the weather is lovely today, shall we walk by the river?", "Yes, see you at nine.")),
    "chinese": (4.0, ("好的，今天天气很好，我们去河边走走吧。", "明天见，九点钟在门口等你。")),
    "long": (45.0, ("That was a long story, thank you for telling me all of it.", "Of course, any time.")),
}
FOLLOW_UP_SECONDS = 2.0
SPEECH_CODES = 25  # a second of audio codes for token2wav's stages


class CovoAudioChat:
    family = "covo"
    step_unit = "token"
    answers_audio = True
    chat_defaults = CHAT_DEFAULTS
    input_rate = INPUT_RATE
    engine_type = TokenEngine  # the LLM state every reply and every teacher-forced check runs through
    streams_weights = True  # load(..., streaming=) reads weights as blocks run (runtime.streaming)

    def __init__(
        self,
        network: CovoAudioNetwork,
        tokenizer,
        config: CovoConfig,
        device: torch.device,
        dtype: torch.dtype,
        timings: dict[str, float],
        directory: Path,
    ):
        self.network, self.tokenizer, self.config = network, tokenizer, config
        self.device, self.dtype, self.directory = device, dtype, directory
        self.init_seconds, self.load_seconds = timings["init_seconds"], timings["load_seconds"]
        self.load_timings = {
            "config_and_tokenizer": timings["tokenizer_seconds"],
            "init": self.init_seconds,
            "weights": self.load_seconds,
            "fuse_projections": timings["fuse_projections_seconds"],
        }
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
        self.load_timings["token2wav"] = self.speech_load_seconds
        return self._speech

    def speech_decoder(self) -> Token2Wav:
        """The loaded token2wav (loading it with the default voice on first use)."""
        return self._speech if self._speech is not None else self.load_speech_decoder()

    @classmethod
    def load(
        cls, source: str | Path, device: torch.device, dtype: torch.dtype, streaming: Streaming | None = None
    ) -> CovoAudioChat:
        """With `streaming` (host only), the network's weights are read from the checkpoint as its blocks run
        (runtime.streaming); token2wav loads whole."""
        path = resolve_checkpoint(source, allow_patterns=CHECKPOINT_FILES)
        timings: dict[str, float] = {}
        with timed(device, timings, "tokenizer_seconds"):
            config = CovoConfig.from_directory(path)
            tokenizer = _load_tokenizer(path, config)
        files = safetensors_files(path)
        with timed(device, timings, "init_seconds"), init_empty_weights(include_buffers=False):
            network = CovoAudioNetwork(config)
        with timed(device, timings, "load_seconds"):
            if streaming is None:
                load_weights_strict(network, files, device, dtype)
                network.to(device)  # moves the buffers built on the host (rotary frequencies)
            else:
                blocks = [repeated_blocks(network, part) for part in ("encoder", "audio_adapter", "llm")]
                StreamedWeights(
                    network, CheckpointReader(files), device, lambda name: dtype, sum(blocks, []), streaming
                )
            network.eval()
        with timed(device, timings, "fuse_projections_seconds"):
            fuse_projections(network.llm.model)  # the decode engine's layout, set once here, not in a first reply
        return cls(network, tokenizer, config, device, dtype, timings, path)

    def compile(self) -> None:
        """Capture the per-token decoding step as one compiled graph (CUDA graphs) where the device backend can."""
        self._compile = True

    def token_engine(self) -> TokenEngine:
        """A fresh LLM state (static KV cache) for one conversation, its step compiled if `compile()` was asked."""
        return self.engine_type(
            self.network.llm,
            self.backend.grouped_query_attention,
            compile_step=self.backend.compile_step if self._compile else None,
        )

    def chat(self, settings: ChatSettings = ChatSettings()) -> CovoChat:
        return CovoChat(self, settings)

    def prepare_clip(self, audio: np.ndarray | str | Path) -> SpeechClip:
        """AnswersAudio: a user turn from a file or from samples at 16 kHz."""
        return prepare_clip(audio)

    def reply_text(self, ids: Sequence[int]) -> str:
        """AnswersAudio: the text of a reply's ids so far."""
        return self.decode_text(self.split_output(list(ids))[0])

    @property
    def speech_rate(self) -> int:
        """AnswersAudio: the sample rate of spoken replies."""
        return self.speech_decoder().sample_rate

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

    def accuracy_examples(self, texts=None, audios: list[str | Path] | None = None) -> dict[str, CovoExample]:
        """The default set (English and Chinese replies, a 45 s turn) or one example per given audio file."""
        if texts:
            raise InputError("Covo-Audio answers speech: give accuracy examples with --audio, not --text")
        follow_up = prepare_clip(_voice_like(FOLLOW_UP_SECONDS))
        if audios:
            replies = ACCURACY_EXAMPLES["english"][1]
            return {Path(audio).name: CovoExample(prepare_clip(audio), follow_up, replies) for audio in audios}
        return {
            name: CovoExample(prepare_clip(_voice_like(seconds)), follow_up, replies)
            for name, (seconds, replies) in ACCURACY_EXAMPLES.items()
        }

    @torch.no_grad()
    def accuracy_stages(self, example: CovoExample) -> list[Stage]:
        """Mel front end, encoder, adapter, the LLM teacher-forced and through the cached two-round path,
        token2wav's DiT on fixed noise and its vocoder."""
        segments = [torch.from_numpy(segment) for segment in example.clip.segments]
        mels = clip_log_mels(example.clip, self.config.encoder.num_mel_bins, self.device)
        encoded = self.network.encoder(mels.to(self.dtype)).last_hidden_state
        # Each round's features cut to its prompt's placeholders, so the whole-sequence stage gives round 2's
        # slots round 2's audio (not round 1's padding rows).
        features = [
            self.network.audio_adapter(encoded).flatten(0, 1)[: example.clip.placeholders].cpu(),
            self.audio_features(example.follow_up)[: example.follow_up.placeholders].cpu(),
        ]
        rounds = []
        for index, (clip, reply) in enumerate(zip((example.clip, example.follow_up), example.replies)):
            reply_ids = self.tokenizer(reply, add_special_tokens=False).input_ids + [self.token_id("<|im_end|>")]
            rounds.append(
                (self.prompt_ids(clip.placeholders, first_round=index == 0)[0].cpu(), torch.tensor(reply_ids))
            )
        sequence = torch.cat([torch.cat([prompt, reply[:-1]]) for prompt, reply in rounds])
        decoder = self.speech_decoder()
        generator = torch.Generator().manual_seed(example.clip.placeholders)
        codes = torch.randint(0, decoder.config.token2latent.token_vocab_size, (1, SPEECH_CODES), generator=generator)
        frames = decoder.config.token2latent.upsample_factor * (decoder.prompt.tokens.shape[1] + codes.shape[1])
        z_dim = decoder.config.token2latent.z_dim
        noise = torch.randn(1, frames, z_dim, generator=generator)
        latents = (
            torch.randn(1, 4 * codes.shape[1], z_dim, generator=generator) * decoder.std.cpu() + decoder.mean.cpu()
        )
        llm_blocks = (
            "llm.model.embed_tokens",
            "llm.model.rotary_emb",
            *repeated_blocks(self.network, "llm"),
            "llm.model.norm",
            "llm.lm_head",
        )
        encoder_blocks = (
            "encoder.conv1",
            "encoder.conv2",
            *repeated_blocks(self.network, "encoder"),
            "encoder.layer_norm",
        )
        dit_blocks = (
            "token2latent.time_embedder",
            "token2latent.conv_embed",
            *repeated_blocks(decoder.network, "token2latent"),
            "token2latent.output_layer",
        )
        vocoder_blocks = ("wavegan.conv_pre", *repeated_blocks(decoder.network, "wavegan"), "wavegan.conv_post")
        return [
            Stage("mel", {"segments": segments}, _log_mels),
            Stage("encoder", {"mels": mels.cpu()}, _encode, encoder_blocks),
            Stage("audio_adapter", {"encoded": encoded.cpu()}, _adapt, repeated_blocks(self.network, "audio_adapter")),
            Stage(
                "llm", {"ids": sequence.view(1, -1), "features": torch.cat(features)}, _teacher_forced_llm, llm_blocks
            ),
            Stage("generation", {"rounds": rounds, "features": features}, _cached_rounds),
            Stage(
                "token2latent",
                {"codes": codes, "noise": noise, "times": torch.tensor([0.0, 0.5])},
                _velocities,
                dit_blocks,
            ),
            Stage("wavegan", {"latents": latents.transpose(1, 2)}, _vocode, vocoder_blocks),
        ]

    def log_mels(self, segments: list[torch.Tensor]) -> torch.Tensor:
        """The encoder's input [segments, mels, 3000] for 16 kHz segments: the front end every clip goes through."""
        return torch.stack(
            [whisper_log_mel(segment, self.config.encoder.num_mel_bins, self.device) for segment in segments]
        )

    @torch.inference_mode()
    def cached_round_logits(
        self, rounds: list[tuple[torch.Tensor, torch.Tensor]], features: list[torch.Tensor]
    ) -> torch.Tensor:
        """Logits [steps, vocab] of known replies through the token engine a chat runs (static KV cache, its
        prefill after history and its decoding step), round after round: each round's prompt in one prefill,
        then its reply a token at a time, the last reply token left out of the cache as generation leaves it.
        Where the LLM's layers stream from the checkpoint, the engine makes the same stack calls layer-major
        (`TokenEngine.teacher_forced`): each layer read once, not once per token."""
        prompts = [prompt_ids.view(1, -1).to(self.device) for prompt_ids, _ in rounds]
        embeds = [self._fill_slots(ids, round_features) for ids, round_features in zip(prompts, features)]
        replies = [reply_ids.to(self.device) for _, reply_ids in rounds]
        if streamed_unit(self.network.llm.model.layers[0]) is not None:
            engine = self.engine_type(self.network.llm, self.backend.grouped_query_attention)
            return engine.teacher_forced(list(zip(embeds, replies)))
        logits: list[torch.Tensor] = []
        known = iter(torch.cat(replies))  # each round takes its own

        def known_token(step_logits, *_):
            logits.append(step_logits[0].float())
            return next(known).view(1)

        engine = self.engine_type(self.network.llm, self.backend.grouped_query_attention, pick=known_token)
        for prompt_ids, prompt_embeds, reply_ids in zip(prompts, embeds, replies):
            engine.generate(
                prompt_embeds,
                prompt_ids,
                NEVER,  # every known id runs
                len(reply_ids),
                SamplingSettings(greedy=True),
                RepetitionPenalties(),
                None,
            )
        return torch.stack(logits)

    @torch.inference_mode()
    def token2wav_velocities(self, codes: torch.Tensor, noise: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """token2wav's DiT velocities [times, 2 (unguided, guided), frames, z_dim] for `codes` after the speaker
        prompt, at state `noise` [1, frames, z_dim]: the network the flow solver calls, on fixed noise."""
        decoder = self.speech_decoder()
        dit = decoder.network.token2latent
        conditioned = dit.embed_codes(torch.cat([decoder.prompt.tokens, codes], dim=1))
        prefix = torch.zeros_like(noise)
        prefix[:, : decoder.prompt.latents.shape[1]] = decoder.prompt.latents

        def pair(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.expand(2, *tensor.shape[1:]).to(self.dtype)

        tokens = torch.cat([torch.zeros_like(conditioned), conditioned]).to(self.dtype)
        return torch.stack(
            [
                dit.velocity(tokens, pair(prefix), pair(noise), time.expand(2), pair(decoder.prompt.speaker))
                for time in times
            ]
        )

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

    @torch.inference_mode()
    def token_logits(self, inputs: CovoExample, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [tokens, vocab] predicting each of `tokens` after the round-0 prompt of `inputs`, through the
        token engine that generates them (its prefill and decoding step, each pick replaced by the known id)."""
        prompt_ids = self.prompt_ids(inputs.clip.placeholders, first_round=True)
        return self.cached_round_logits([(prompt_ids, tokens.view(-1))], [self.audio_features(inputs.clip)])

    def greedy_tokens(self, inputs: CovoExample, steps: int) -> torch.Tensor:
        """`steps` plain greedy tokens after the round-0 prompt (no penalties, the stop token ignored)."""
        return self.sampled_tokens(inputs, steps, None)

    def sampled_tokens(self, inputs: CovoExample, steps: int, seed: int | None) -> torch.Tensor:
        """`steps` tokens after the round-0 prompt, sampled as later rounds are from `seed` (None: greedy);
        no penalties, the stop token ignored."""
        sampling = SamplingSettings(greedy=True) if seed is None else round_sampling(CHAT_DEFAULTS, 1)
        generator = None if seed is None else make_generator(self.device, seed)
        run = self._fixed_run(inputs, steps, sampling, RepetitionPenalties(1.0, 1.0, 1), generator)
        return torch.tensor(run.ids)

    def tokens_to_audio(self, tokens: torch.Tensor) -> None:
        """Text replies have no audio of their own."""
        return None

    def run_fixed(self, inputs: CovoExample, steps: int) -> None:
        """A round-0 reply of exactly `steps` tokens: encoder, prefill, then greedy decoding with penalties."""
        self._fixed_run(inputs, steps, round_sampling(CHAT_DEFAULTS, 0), PENALTIES)
        return None

    def weight_bytes_per_step(self) -> int:
        """Weight bytes one token reads: every LLM layer, the final norm and the output head."""
        llm = self.network.llm
        return sum(
            p.numel() * p.element_size()
            for module in (llm.model.layers, llm.model.norm, llm.lm_head)
            for p in module.parameters()
        )

    def weight_bytes_per_prompt(self) -> int:
        """Weight bytes a prompt's prefill reads, whatever its length: the LLM's layers once."""
        return sum(p.numel() * p.element_size() for p in self.network.llm.model.layers.parameters())

    def _fixed_run(self, inputs: CovoExample, steps: int, sampling, penalties, generator=None):
        prompt_ids = self.prompt_ids(inputs.clip.placeholders, first_round=True)
        return self._reply(
            prompt_ids, self.prompt_embeds(prompt_ids, inputs.clip), steps, sampling, penalties, generator
        )

    def _reply(
        self,
        prompt_ids: torch.Tensor,
        embeds: torch.Tensor,
        steps: int,
        sampling=SamplingSettings(greedy=True),
        penalties=RepetitionPenalties(),
        generator=None,
    ):
        return self.token_engine().generate(embeds, prompt_ids, NEVER, steps, sampling, penalties, generator)

    def stage_timings(self, inputs: CovoExample, speech_codes: int = 75) -> dict[str, float]:
        """Seconds of each stage of a spoken reply to `inputs`, each timed alone after a device sync, in the
        order a reply runs them: the front end and the encoder (with the adapter) per second of input audio,
        prefill tokens per second, decode seconds per token (a 20-token reply minus a 1-token one, over 19),
        token2wav's DiT and vocoder per second of speech (`speech_codes` fixed codes, 25 a second). The first
        reply token is front end + encoder + the 1-token reply; the first reply audio is front end + encoder
        + the 20-token reply + token2wav of 15 codes (the reference interleaves 5 text and 15 audio tokens,
        so the first 15 codes are complete after 20 tokens). Run it warm (after a first call)."""
        clip, timings = inputs.clip, {}
        prompt_ids = self.prompt_ids(clip.placeholders, first_round=True)
        speech = self.speech_decoder()
        codes = torch.arange(speech_codes) * 211 % speech.config.token2latent.token_vocab_size  # fixed, varied
        with torch.inference_mode():
            with timed(self.device, timings, "front_end"):
                mels = clip_log_mels(clip, self.config.encoder.num_mel_bins, self.device)
            with timed(self.device, timings, "encoder"):
                embeds = self._fill_slots(prompt_ids, self.network.encode_audio(mels))
            engine = self.token_engine()
            engine.reserve(embeds.shape[1])  # the cache is allocated outside the timer
            with timed(self.device, timings, "prefill"):
                engine.prefill(embeds)
            with timed(self.device, timings, "one_token"):
                self._reply(prompt_ids, embeds, 1)
            with timed(self.device, timings, "twenty_tokens"):
                self._reply(prompt_ids, embeds, 20)
            with timed(self.device, timings, "dit"):
                latents = speech.speech_latents(codes)
            with timed(self.device, timings, "vocoder"):
                audio_seconds = len(speech.vocode(latents)) / speech.sample_rate
            with timed(self.device, timings, "first_codes_speech"):
                speech.render(codes[:15])
        decode = (timings["twenty_tokens"] - timings["one_token"]) / 19
        listening = timings["front_end"] + timings["encoder"]
        return {
            "input_audio_seconds": clip.seconds,
            "front_end_seconds_per_audio_second": timings["front_end"] / clip.seconds,
            "encoder_seconds_per_audio_second": timings["encoder"] / clip.seconds,
            "prefill_tokens": prompt_ids.shape[1],
            "prefill_tokens_per_second": prompt_ids.shape[1] / timings["prefill"],
            "decode_seconds_per_token": decode if decode > 0 else None,  # None: noise swamped the difference
            "token2wav_speech_seconds": audio_seconds,
            "token2wav_dit_rtf": timings["dit"] / audio_seconds,
            "token2wav_vocoder_rtf": timings["vocoder"] / audio_seconds,
            "first_reply_token_seconds": listening + timings["one_token"],
            "first_reply_audio_seconds": listening + timings["twenty_tokens"] + timings["first_codes_speech"],
        }

    def named_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """The network's modules, then token2wav's (token2latent.*, wavegan.*) when the checkpoint has it."""
        yield from self.network.named_modules()
        if self._speech is not None or (self.directory / "token2wav").is_dir():
            for name, module in self.speech_decoder().network.named_modules():
                if name:
                    yield name, module


def _log_mels(chat: CovoAudioChat, inputs: dict) -> torch.Tensor:
    return chat.log_mels(inputs["segments"])


def _encode(chat: CovoAudioChat, inputs: dict) -> torch.Tensor:
    return chat.network.encoder(inputs["mels"].to(chat.dtype)).last_hidden_state


def _adapt(chat: CovoAudioChat, inputs: dict) -> torch.Tensor:
    return chat.network.audio_adapter(inputs["encoded"].to(chat.dtype))


def _teacher_forced_llm(chat: CovoAudioChat, inputs: dict) -> torch.Tensor:
    embeds = chat._fill_slots(inputs["ids"], inputs["features"])
    return chat.network.llm(inputs_embeds=embeds, use_cache=False).logits[0]


def _cached_rounds(chat: CovoAudioChat, inputs: dict) -> torch.Tensor:
    return chat.cached_round_logits(inputs["rounds"], inputs["features"])


def _velocities(chat: CovoAudioChat, inputs: dict) -> torch.Tensor:
    return chat.token2wav_velocities(inputs["codes"], inputs["noise"], inputs["times"])


def _vocode(chat: CovoAudioChat, inputs: dict) -> torch.Tensor:
    return chat.speech_decoder().network.wavegan(inputs["latents"].float())


def _voice_like(seconds: float) -> np.ndarray:
    """A fixed harmonic glide with a little seeded noise at 24 kHz: speech-like, always the same."""
    t = np.arange(int(seconds * INPUT_RATE)) / INPUT_RATE
    pitch = 2 * np.pi * (140 * t + 20 * t**2)
    signal = sum(0.2 / k * np.sin(k * pitch) for k in range(1, 6))
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.shape)
    return (signal + noise).astype(np.float32)


def _load_tokenizer(path: Path, config: CovoConfig):
    require_tokenizer_files(path, (("tokenizer.json",), ("vocab.json", "merges.txt")))  # Qwen2's fast or BPE files
    try:
        tokenizer = Qwen2Tokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load the tokenizer of {path}: {first_line(error)}") from None
    vocabulary = tokenizer.get_vocab()
    missing = [token for token in REQUIRED_TOKENS if token not in vocabulary]
    if missing:
        raise CheckpointError(f"the tokenizer of {path} lacks {', '.join(missing)}: not a Covo-Audio tokenizer")
    if len(tokenizer) != config.audio_token_index:
        raise CheckpointError(
            f"{path}: tokenizer has {len(tokenizer)} tokens but audio codes start at id {config.audio_token_index}"
        )
    return tokenizer
