"""Sesame CSM-1B text-to-speech on any device: load once, then synthesize many times."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from accelerate import init_empty_weights
from safetensors import SafetensorError
from torch import nn
from transformers import CsmConfig, CsmForConditionalGeneration, CsmProcessor

from voxport.audio.io import check_samples, load_audio
from voxport.errors import CheckpointError, InputError, first_line
from voxport.models.base import SpeechSpec, SpokenAudio, Stage, repeated_blocks
from voxport.models.csm.engine import CsmEngine, arrange_weights
from voxport.models.csm.generation import (
    StreamChunk,
    generate_codes,
    stream,
    synthesize,
    synthesize_with_transformers,
)
from voxport.models.csm.prompt import render_prompt
from voxport.models.csm.synthesis import SPEECH_DEFAULTS, SynthesisRequest, SynthesisResult
from voxport.models.sampling import SamplingSettings
from voxport.runtime.checkpoints import require_tokenizer_files, resolve_checkpoint
from voxport.runtime.devices import backend_for
from voxport.runtime.streaming import CheckpointReader, StreamedWeights, Streaming
from voxport.runtime.timing import timed
from voxport.runtime.weights import safetensors_files

CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.jinja", "tokenizer*"]
BENCH_TEXTS = {
    "short": "Hello, how are you today?",
    "medium": "The weather was lovely this morning, so we walked along the river and talked about the week ahead.",
    "long": (
        "When the port was finished, the team ran every check again: the logits against the float32 reference, "
        "the same tokens twice, the speed of every configuration, and the list of operators the device runs. "
        "Only then did they write the report, with the numbers and the plots side by side."
    ),
}
# Accuracy's default examples: English, Chinese, and one long enough for 64 frames through the static caches.
ACCURACY_TEXTS = {
    "english": ("Every port is checked against a float32 reference.", 8),
    "chinese": ("每一次移植都要与浮点参考逐层核对。", 8),
    "long": (BENCH_TEXTS["long"], 64),
}
USER_TEXT_FRAMES = 32
# transformers nests Mimi's halves under codec_model.encoder and .decoder; the checkpoint keeps them flat.
_CODEC_KEYS = (
    ("codec_model.encoder.encoder_seanet.", "codec_model.encoder."),
    ("codec_model.encoder.encoder_transformer.", "codec_model.encoder_transformer."),
    ("codec_model.encoder.downsample", "codec_model.downsample"),
    ("codec_model.decoder.decoder_seanet.", "codec_model.decoder."),
    ("codec_model.decoder.decoder_transformer.", "codec_model.decoder_transformer."),
    ("codec_model.decoder.upsample", "codec_model.upsample"),
)
_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)


@dataclass(frozen=True)
class CsmExample:
    """Fixed inputs for teacher-forced checks: a prompt and the frames that follow it."""

    request: SynthesisRequest
    codes: torch.Tensor  # [frames, codebooks]


class CsmSpeech:
    """A CSM checkpoint on one device. The codec runs in float32 whatever the model dtype."""

    family = "csm"
    step_unit = "frame"
    speaks_text = True
    speech_defaults = SPEECH_DEFAULTS
    engine_type = CsmEngine  # the static-cache engine class generation and every teacher-forced check run
    streams_weights = True  # load(..., streaming=) reads weights as blocks run (runtime.streaming)

    def __init__(
        self,
        model: CsmForConditionalGeneration,
        processor: CsmProcessor,
        load_seconds: float,
        load_timings: dict[str, float] | None = None,
    ):
        self.model = model
        self.processor = processor
        self.config = model.config
        self.device = model.lm_head.weight.device
        self.dtype = model.lm_head.weight.dtype
        self.load_seconds = load_seconds
        self.load_timings = load_timings or {"weights": load_seconds}
        self.backend = backend_for(self.device)
        self._compile = False
        self._engine: tuple[CsmEngine, Callable] | None = None

    @property
    def sample_rate(self) -> int:
        return self.config.codec_config.sampling_rate

    @classmethod
    def load(
        cls, source: str | Path, device: torch.device, dtype: torch.dtype, streaming: Streaming | None = None
    ) -> CsmSpeech:
        """With `streaming` (host only), weights are read from the checkpoint as blocks run (runtime.streaming)."""
        path = resolve_checkpoint(source, allow_patterns=CHECKPOINT_FILES)
        _expect_model_type(path, "csm")
        timings: dict[str, float] = {}
        with timed(device, timings, "tokenizer_and_processor"):
            processor = _load_processor(path)
        with timed(device, timings, "weights"):
            model = (
                _load_weights(path, device, dtype)
                if streaming is None
                else _stream_weights(path, device, dtype, streaming)
            )
        with timed(device, timings, "weight_layout"):  # the engine's layout, set once here, not in a first call
            arrange_weights(model)
        with timed(device, timings, "engine"):  # static caches for one row, allocated here, not in a first call
            engine = cls.engine_type(model, 1)
        speech = cls(model, processor, sum(timings.values()), timings)
        speech._engine = (engine, engine.frame)
        return speech

    @property
    def step_rate(self) -> float:
        """Codec frames (generation steps) per second of audio: 12.5."""
        return self.config.codec_config.frame_rate

    @property
    def frame_samples(self) -> int:
        """Audio samples per codec frame (1920 at 24 kHz and 12.5 frames a second)."""
        return round(self.sample_rate / self.config.codec_config.frame_rate)

    def compile(self) -> None:
        """Capture the per-frame step as one compiled graph (CUDA graphs) where the device backend can."""
        self._compile = True
        self._engine = None

    def engine(self, batch: int) -> tuple[CsmEngine, Callable]:
        """The static-cache engine (of `engine_type`) for `batch` rows and the frame step it runs (compiled or
        eager)."""
        if self._engine is None or self._engine[0].batch != batch or type(self._engine[0]) is not self.engine_type:
            engine = self.engine_type(self.model, batch)
            step = self.backend.compile_step(engine.frame) if self._compile else None
            self._engine = (engine, step or engine.frame)
        return self._engine

    def generate(self, request: SynthesisRequest, on_frame: Callable[[int], None] | None = None) -> SynthesisResult:
        """Speech for `request`; `on_frame(n)` hears how many frames are done after each chunk."""
        return synthesize(self, [request], on_frame)[0]

    def generate_batch(
        self, requests: list[SynthesisRequest], on_frame: Callable[[int], None] | None = None
    ) -> list[SynthesisResult]:
        """Speech for several requests at once (same sampling settings, own seeds); each row ends on its own."""
        return synthesize(self, requests, on_frame)

    def stream(self, request: SynthesisRequest, first_chunk: int = 2, chunk: int = 8) -> Iterator[StreamChunk]:
        """Audio chunks while frames are generated (see generation.stream)."""
        return stream(self, request, first_chunk, chunk)

    def speak(self, specs: list[SpeechSpec], on_step: Callable[[int], None] | None = None) -> list[SpokenAudio]:
        """SpeaksText: one batch of family-independent specs."""
        results = self.generate_batch([SynthesisRequest.from_spec(spec) for spec in specs], on_step)
        return [SpokenAudio(r.audio, r.sample_rate, r.frames, r.compute_seconds, r.codes, r.timings) for r in results]

    def speak_stream(self, spec: SpeechSpec) -> Iterator[SpokenAudio]:
        """SpeaksText: pieces of one spec's speech as they are made."""
        started = 0.0
        for chunk in self.stream(SynthesisRequest.from_spec(spec)):
            yield SpokenAudio(
                chunk.audio, self.sample_rate, len(chunk.codes), chunk.seconds_since_start - started, chunk.codes
            )
            started = chunk.seconds_since_start

    def speak_reference(self, spec: SpeechSpec) -> SpokenAudio:
        """The same chunk through transformers' own generate(), for comparison (no min steps there)."""
        result = self.generate_with_transformers(SynthesisRequest.from_spec(spec))
        return SpokenAudio(
            result.audio, result.sample_rate, result.frames, result.compute_seconds, result.codes, result.timings
        )

    def count_text_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False).input_ids)

    def generate_with_transformers(self, request: SynthesisRequest) -> SynthesisResult:
        """The same job through transformers' CsmForConditionalGeneration.generate, for comparison."""
        return synthesize_with_transformers(self, request)

    @torch.inference_mode()
    def prompt_input_ids(self, request: SynthesisRequest) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Prompt ids [1, T] and the codec frames of each context turn."""
        context_codes = [self.encode_audio(turn.audio) for turn in request.context]
        text = render_prompt(self.processor, request, [len(codes) for codes in context_codes])
        ids = self.processor.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        return ids.to(self.device), context_codes

    @torch.inference_mode()
    def prompt_embeds(self, request: SynthesisRequest) -> torch.Tensor:
        """Backbone input [1, T, hidden]: text embeddings, audio positions replaced by their frames' embeddings."""
        input_ids, context_codes = self.prompt_input_ids(request)
        embeds = self.model.embed_text_tokens(input_ids)
        if context_codes:
            frames = torch.cat(context_codes).unsqueeze(0)
            embeds[input_ids == self.config.audio_token_id] = self._embed_frames(frames)[0]
            # Each context audio ends in an audio-eos token, embedded as an all-eos frame.
            eos_frame = torch.full_like(frames[:, :1], self.config.codebook_eos_token_id)
            eos_positions = input_ids == self.config.audio_eos_token_id
            embeds[eos_positions] = self._embed_frames(eos_frame)[0, 0]
        return embeds

    def context_samples(self, audio: np.ndarray | str | Path) -> np.ndarray:
        """Mono samples at the codec rate of a context turn (samples, or a file), checked like any input audio."""
        if isinstance(audio, np.ndarray):
            return check_samples(audio, self.sample_rate, "context audio samples")
        return load_audio(audio, self.sample_rate)

    @torch.inference_mode()
    def encode_audio(self, audio: np.ndarray | str | Path) -> torch.Tensor:
        """Codec frames [frames, codebooks] of mono audio (samples at the codec rate, or a file)."""
        samples = torch.from_numpy(np.ascontiguousarray(self.context_samples(audio))).to(self.device)
        codes = self.model.codec_model.encode(samples.view(1, 1, -1)).audio_codes
        return codes[0].transpose(0, 1)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """Float32 mono audio of codes [frames, codebooks]: 1920 samples a frame at 24 kHz."""
        if codes.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        audio = self.model.codec_model.decode(codes.transpose(0, 1).unsqueeze(0)).audio_values
        return audio[0, 0].float().cpu().numpy()

    def example_inputs(self) -> CsmExample:
        generator = torch.Generator().manual_seed(0)
        codes = torch.randint(
            0, self.config.codec_config.codebook_size, (8, self.config.num_codebooks), generator=generator
        )
        return CsmExample(SynthesisRequest(text="Every port is checked against a float32 reference."), codes)

    def accuracy_examples(self, texts: list[str] | None = None, audios=None) -> dict[str, CsmExample]:
        """The default set (English, Chinese, long) or one example per given text, each with fixed codes."""
        if audios:
            raise InputError("CSM turns text into speech: give accuracy examples with --text, not --audio")
        chosen = (
            {f"text{index}": (text, USER_TEXT_FRAMES) for index, text in enumerate(texts)} if texts else ACCURACY_TEXTS
        )
        examples = {}
        for index, (name, (text, frames)) in enumerate(chosen.items()):
            generator = torch.Generator().manual_seed(index)
            codes = torch.randint(
                1, self.config.codec_config.codebook_size, (frames, self.config.num_codebooks), generator=generator
            )
            examples[name] = CsmExample(SynthesisRequest(text=text), codes)
        return examples

    @torch.no_grad()
    def accuracy_stages(self, example: CsmExample) -> list[Stage]:
        """Backbone and depth decoder forwards, the engine through its static caches, and the Mimi decode."""
        ids = self.prompt_input_ids(example.request)[0].cpu()
        codes = example.codes.long()
        backbone_inputs = {"ids": ids, "codes": codes}
        states = _backbone_states(self, _to_device(backbone_inputs, self.device))
        latents = self.model.codec_model.quantizer.decode(codes.to(self.device).transpose(0, 1).unsqueeze(0))
        prompt = self.model.embed_text_tokens(ids.to(self.device))
        backbone_blocks = (
            "embed_text_tokens",
            "backbone_model.embed_tokens",
            "backbone_model.rotary_emb",
            *repeated_blocks(self.model, "backbone_model"),
            "backbone_model.norm",
            "lm_head",
        )
        depth_blocks = (
            "depth_decoder.model.embed_tokens",
            "depth_decoder.model.inputs_embeds_projector",
            "depth_decoder.model.rotary_emb",
            *repeated_blocks(self.model, "depth_decoder"),
            "depth_decoder.model.norm",
            "depth_decoder.codebooks_head",
        )
        decoder_blocks = ("codec_model.decoder.upsample", *repeated_blocks(self.model, "codec_model.decoder"))
        return [
            Stage("backbone_model", backbone_inputs, _backbone_logits, backbone_blocks),
            Stage("depth_decoder", {"codes": codes, "states": states.cpu()}, _depth_logits, depth_blocks),
            Stage("engine", {"prompt": prompt.cpu(), "codes": codes}, _engine_logits),
            Stage("codec_model.quantizer", {"codes": codes}, _dequantize),
            Stage("codec_model.decoder", {"latents": latents.cpu()}, _decode_latents, decoder_blocks),
        ]

    @staticmethod
    def checkpoint_name(module: str) -> str:
        """The checkpoint key prefix of a module: the name a port engineer finds in the weight files."""
        for nested, flat in _CODEC_KEYS:
            if module.startswith(nested):
                return flat + module[len(nested) :]
        return module

    @torch.inference_mode()
    def teacher_forced_engine(self, prompt: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The engine's logits [frames, codebooks, codebook_size] for known `codes` after `prompt` [1, T, hidden]:
        its real frame step over the static caches, with each pick replaced by the known code."""
        logits: list[torch.Tensor] = []
        frame_index = 0

        def known_code(step_logits, settings, noise, step):
            logits.append(step_logits.reshape(-1))
            return codes[frame_index, step].expand(step_logits.shape[:-1])

        engine = self.engine_type(self.model, 1, pick=known_code)
        starts = torch.zeros(1, dtype=torch.long, device=self.device)
        hidden = engine.prefill(prompt, starts)
        greedy, late = SamplingSettings(greedy=True), torch.tensor(False, device=self.device)
        for frame_index in range(codes.shape[0]):
            _, hidden = engine.frame(
                hidden, torch.tensor(prompt.shape[1] + frame_index, device=self.device), starts, late, greedy, None
            )
        return torch.stack(logits).view(codes.shape[0], codes.shape[1], -1)

    def bench_inputs(self, size: str) -> CsmExample:
        """A fixed prompt of a given length class (short, medium, long) for benchmarks."""
        return CsmExample(SynthesisRequest(text=BENCH_TEXTS[size]), torch.zeros(0, self.config.num_codebooks))

    @torch.no_grad()
    def forward_logits(self, inputs: CsmExample) -> dict[str, torch.Tensor]:
        """Teacher-forced logits of `inputs.codes` after the prompt: codebook 0 [frames, vocab] from the
        backbone, codebooks 1..31 [frames, 31, vocab] from the depth decoder."""
        codes = inputs.codes.to(self.device)
        prompt = self.prompt_embeds(inputs.request)
        frames = self._embed_frames(codes[:-1].unsqueeze(0))
        hidden = self.model.backbone_model(inputs_embeds=torch.cat([prompt, frames], dim=1)).last_hidden_state
        frame_states = hidden[0, prompt.shape[1] - 1 :]  # the state each frame is predicted from
        first = self.model.lm_head(frame_states)
        # Depth decoder, all frames at once: [placeholder, codebooks 0..30] predicts codebooks 1..31.
        depth_ids = torch.nn.functional.pad(codes[:, :-1], (1, 0))
        rest = self.model.depth_decoder(input_ids=depth_ids, backbone_last_hidden_state=frame_states).logits
        return {"backbone_logits": first.float(), "depth_logits": rest.float()}

    def token_logits(self, inputs: CsmExample, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [frames, codebooks, codebook_size] predicting each code of `tokens` [frames, codebooks], through
        the engine that generates them (its prefill and frame step, each pick replaced by the known code)."""
        return self.teacher_forced_engine(self.prompt_embeds(inputs.request), tokens.to(self.device))

    def greedy_tokens(self, inputs: CsmExample, steps: int) -> torch.Tensor:
        """`steps` frames [steps, codebooks] of greedy codes, end of audio ignored."""
        return self.sampled_tokens(inputs, steps, None)

    def sampled_tokens(self, inputs: CsmExample, steps: int, seed: int | None) -> torch.Tensor:
        """`steps` frames [steps, codebooks], sampled with the default settings from `seed` (None: greedy)."""
        request = replace(inputs.request, max_frames=steps, min_frames=steps, greedy=seed is None, seed=seed or 0)
        embeds = self.prompt_embeds(request)
        codes, _ = generate_codes(
            self, embeds, torch.zeros(1, dtype=torch.long, device=self.device), [request], [request.seed]
        )
        return codes[0]

    def tokens_to_audio(self, tokens: torch.Tensor) -> np.ndarray:
        return self.decode(tokens.to(self.device))

    def run_fixed(self, inputs: CsmExample, steps: int) -> float:
        """The whole job for exactly `steps` frames (sampled, decoded); returns the audio seconds made."""
        request = replace(inputs.request, max_frames=steps, min_frames=steps, seed=0)
        return self.generate(request).audio_seconds

    def stage_timings(self, inputs: CsmExample, frames: int = 12) -> dict[str, float]:
        """Seconds of each stage of `frames` frames of speech for `inputs`, device synchronized: time to the
        first audio chunk when streaming (2 frames), the whole stream, and the codec's decode per audio second."""
        request = replace(inputs.request, max_frames=frames, min_frames=frames, seed=0)
        self.generate(replace(request, max_frames=2, min_frames=2))  # warm-up
        chunks = self.stream(request)
        first = next(chunks)
        *_, last = [first, *chunks]
        codes = torch.randint(
            0,
            self.config.codec_config.codebook_size,
            (frames, self.config.num_codebooks),
            generator=torch.Generator().manual_seed(0),
        ).to(self.device)
        timings: dict[str, float] = {}
        with timed(self.device, timings, "codec"):
            audio_seconds = len(self.decode(codes)) / self.sample_rate
        return {
            "stream_frames": frames,
            "first_audio_seconds": first.seconds_since_start,
            "stream_seconds": last.seconds_since_start,
            "codec_decode_seconds_per_audio_second": timings["codec"] / audio_seconds,
        }

    def weight_bytes_per_step(self) -> int:
        """Weight bytes one frame reads: the backbone and its head once, the depth decoder and one head 31 times
        (each head's rows for the codec's ids only: the engine never computes the specials' logits)."""
        depth = self.model.depth_decoder
        head_rows = self.config.codec_config.codebook_size
        per_depth_step = (
            _bytes(depth.model.layers)
            + _bytes(depth.model.norm)
            + _bytes(depth.model.inputs_embeds_projector)
            + head_rows * depth.codebooks_head.weight.shape[1] * depth.codebooks_head.weight.element_size()
        )
        head = self.model.lm_head.weight
        frame = self.weight_bytes_per_prompt() + head_rows * head.shape[1] * head.element_size()
        return frame + (self.config.num_codebooks - 1) * per_depth_step

    def weight_bytes_per_prompt(self) -> int:
        """Weight bytes a prompt's prefill reads, whatever its length: the backbone once."""
        backbone = self.model.backbone_model
        return _bytes(backbone.layers) + _bytes(backbone.norm)

    def named_modules(self) -> Iterator[tuple[str, nn.Module]]:
        return self.model.named_modules()

    def _embed_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """Summed codebook embeddings [batch, frames, hidden] of codes [batch, frames, codebooks]."""
        return self.model.backbone_model.embed_tokens(codes)

    def check_context_length(self, prompt_length: int, max_frames: int) -> None:
        limit = self.config.max_position_embeddings
        if prompt_length + max_frames > limit:
            raise InputError(
                f"prompt ({prompt_length} positions, context audio included) plus max tokens ({max_frames}) "
                f"exceeds the model's context of {limit} positions: shorten the context or lower --max-tokens"
            )


def _to_device(inputs: dict, device: torch.device) -> dict:
    return {name: value.to(device) for name, value in inputs.items()}


def _backbone_states(speech: CsmSpeech, inputs: dict) -> torch.Tensor:
    """Backbone states [frames, hidden] each frame is predicted from, for prompt ids and teacher-forced codes."""
    prompt = speech.model.embed_text_tokens(inputs["ids"])
    frames = speech._embed_frames(inputs["codes"][:-1].unsqueeze(0))
    hidden = speech.model.backbone_model(inputs_embeds=torch.cat([prompt, frames], dim=1), use_cache=False)
    return hidden.last_hidden_state[0, prompt.shape[1] - 1 :]


def _backbone_logits(speech: CsmSpeech, inputs: dict) -> torch.Tensor:
    return speech.model.lm_head(_backbone_states(speech, inputs))


def _depth_logits(speech: CsmSpeech, inputs: dict) -> torch.Tensor:
    depth_ids = torch.nn.functional.pad(inputs["codes"][:, :-1], (1, 0))
    states = inputs["states"].to(speech.dtype)
    return speech.model.depth_decoder(input_ids=depth_ids, backbone_last_hidden_state=states, use_cache=False).logits


def _engine_logits(speech: CsmSpeech, inputs: dict) -> torch.Tensor:
    return speech.teacher_forced_engine(inputs["prompt"].to(speech.dtype), inputs["codes"])


def _dequantize(speech: CsmSpeech, inputs: dict) -> torch.Tensor:
    return speech.model.codec_model.quantizer.decode(inputs["codes"].transpose(0, 1).unsqueeze(0))


def _decode_latents(speech: CsmSpeech, inputs: dict) -> torch.Tensor:
    return speech.model.codec_model.decoder(inputs["latents"]).audio_values


def _load_processor(path: Path) -> CsmProcessor:
    require_tokenizer_files(path, (("tokenizer.json",),))  # Llama 3's tokenizer comes in this one file
    try:
        return CsmProcessor.from_pretrained(path)
    except _LOAD_ERRORS as error:
        raise CheckpointError(f"cannot load CSM checkpoint {path}: {first_line(error)}") from None


class _CsmWithFloat32Codec(CsmForConditionalGeneration):
    """CSM whose Mimi codec is read from the checkpoint in float32 whatever the model dtype (transformers' plan for
    modules kept in float32), rather than rounded to the dtype and upcast: the codec runs in float32, so a
    checkpoint's float32 codec weights are used as stored."""

    _keep_in_fp32_modules_strict = ["codec_model"]


def _load_weights(path: Path, device: torch.device, dtype: torch.dtype) -> CsmForConditionalGeneration:
    """The model, strictly: every weight of the architecture must be in the files."""
    try:
        model, info = _CsmWithFloat32Codec.from_pretrained(
            path, dtype=dtype, device_map=device, output_loading_info=True
        )
    except _LOAD_ERRORS as error:
        raise CheckpointError(f"cannot load CSM checkpoint {path}: {first_line(error)}") from None
    _expect_all_weights(path, info)
    model.codec_model.float()  # buffers the codec computes rather than stores
    return model.eval()


def _stream_weights(path: Path, device: torch.device, dtype: torch.dtype, streaming: Streaming):
    """The model built on the meta device, its weights read from the checkpoint as its blocks run; the codec in
    float32, the depth decoder's embedding (read directly by the engine) whole."""
    try:
        config = CsmConfig.from_pretrained(path)
    except _LOAD_ERRORS as error:
        raise CheckpointError(f"cannot load CSM checkpoint {path}: {first_line(error)}") from None
    with init_empty_weights(include_buffers=False):
        model = _CsmWithFloat32Codec(config)
    model.tie_weights()  # the shared codebook embedding, as from_pretrained ties it
    blocks = [repeated_blocks(model, part) for part in ("backbone_model", "depth_decoder", "codec_model")]
    StreamedWeights(
        model,
        CheckpointReader(safetensors_files(path)),
        device,
        lambda name: torch.float32 if name.startswith("codec_model.") else dtype,
        sum(blocks, []),
        streaming,
        key_of=CsmSpeech.checkpoint_name,
        resident=("depth_decoder.model.embed_tokens",),
    )
    model.codec_model.float()  # buffers the codec computes rather than stores
    return model.eval()


def _expect_model_type(path: Path, model_type: str) -> None:
    try:
        found = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path / 'config.json'}: {first_line(error)}") from None
    if found != model_type:
        raise CheckpointError(f"{path} holds a '{found}' checkpoint: expected model_type '{model_type}'")


def _expect_all_weights(path: Path, info: dict) -> None:
    missing, unexpected = sorted(info.get("missing_keys", ())), sorted(info.get("unexpected_keys", ()))
    if missing or unexpected:
        named = ", ".join([f"missing {key}" for key in missing[:3]] + [f"unexpected {key}" for key in unexpected[:3]])
        raise CheckpointError(f"checkpoint {path} does not match the CSM architecture: {named}")


def _bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())
