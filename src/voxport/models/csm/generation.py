"""CSM synthesis jobs on the static-cache engine: one text, a batch of texts, or a stream of audio chunks;
and the same job through transformers' own generate(), kept for comparison."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from voxport.errors import InputError
from voxport.models.csm.codec_stream import MimiDecodeStream
from voxport.models.csm.engine import ends_audio
from voxport.models.csm.synthesis import SynthesisRequest, SynthesisResult
from voxport.runtime.seeding import fresh_seed, make_generator
from voxport.runtime.timing import timed

CHECK_EVERY = 8  # frames between end-of-audio checks (the loop's only host syncs)


@dataclass
class StreamChunk:
    audio: np.ndarray  # float32 mono samples of this chunk's frames
    codes: np.ndarray  # [frames, codebooks]
    seconds_since_start: float  # when the chunk was ready, device synchronized


@torch.inference_mode()
def synthesize(
    tts, requests: list[SynthesisRequest], on_frame: Callable[[int], None] | None = None
) -> list[SynthesisResult]:
    """Speech for every request, generated as one batch; each row stops at its own end of audio (or frame
    limit) and samples from its own seed, so a request gives the same codes alone or batched."""
    _check_shared_sampling(requests)
    seeds = [request.seed if request.seed is not None else fresh_seed() for request in requests]
    timings: dict[str, float] = {}
    with timed(tts.device, timings, "prompt_seconds"):
        embeds, starts = _batched_prompts(tts, requests)
    with timed(tts.device, timings, "generation_seconds"):
        codes, lengths = generate_codes(tts, embeds, starts, requests, seeds, on_frame)
    with timed(tts.device, timings, "decode_seconds"):
        audio = [tts.decode(codes[row, :length]) for row, length in enumerate(lengths)]
    return [
        SynthesisResult(
            audio=audio[row],
            sample_rate=tts.sample_rate,
            codes=codes[row, :length].cpu().numpy(),
            seed=seeds[row],
            timings=dict(timings),
        )
        for row, length in enumerate(lengths)
    ]


@torch.inference_mode()
def generate_codes(
    tts,
    embeds: torch.Tensor,
    starts: torch.Tensor,
    requests: list[SynthesisRequest],
    seeds: list[int],
    on_frame: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Codes [batch, frames, codebooks] for prompts already embedded (row r as requests[r] asks, sampled from
    seeds[r]), and each row's length before its end."""
    chunks, done = [], 0
    for chunk in _run(tts, embeds, starts, requests, seeds, lambda frames: CHECK_EVERY):
        chunks.append(chunk)
        done += chunk.codes.shape[1]
        if on_frame is not None:
            on_frame(done)
    return torch.cat([chunk.codes for chunk in chunks], dim=1), chunks[-1].lengths.tolist()


@torch.inference_mode()
def stream(tts, request: SynthesisRequest, first_chunk: int = 2, chunk: int = CHECK_EVERY) -> Iterator[StreamChunk]:
    """Audio chunks as frames are generated: a short first chunk for a quick start, then `chunk` frames each.

    Mimi keeps its decoder state between chunks (see `MimiDecodeStream`), so each chunk costs the same and the
    chunks join into what one-shot decoding of all frames gives.
    """
    start = time.perf_counter()
    seed = request.seed if request.seed is not None else fresh_seed()
    embeds, starts = _batched_prompts(tts, [request])
    codec = MimiDecodeStream(tts.model.codec_model)
    decoded = 0

    def sizes(done: int) -> int:
        return first_chunk if done == 0 else chunk

    for piece in _run(tts, embeds, starts, [request], [seed], sizes):
        new = piece.codes[0, : int(piece.lengths[0]) - decoded]
        if new.shape[0]:
            audio = codec.decode(new.transpose(0, 1).unsqueeze(0))[0, 0].float().cpu().numpy()
            decoded += new.shape[0]
            yield StreamChunk(audio, new.cpu().numpy(), time.perf_counter() - start)


@torch.inference_mode()
def synthesize_with_transformers(tts, request: SynthesisRequest) -> SynthesisResult:
    """The same job through CsmForConditionalGeneration.generate (min frames are not supported there)."""
    seed = request.seed if request.seed is not None else fresh_seed()
    torch.manual_seed(seed)  # transformers samples from the global generator
    conversation = [
        {
            "role": str(turn.speaker),
            "content": [
                {"type": "text", "text": turn.text},
                {"type": "audio", "audio": tts.context_samples(turn.audio)},
            ],
        }
        for turn in request.context
    ] + [{"role": str(request.speaker), "content": [{"type": "text", "text": request.text}]}]
    config = tts.config
    specials = list(range(config.codec_config.codebook_size, config.vocab_size))
    sampling = {"do_sample": not request.greedy, "depth_decoder_do_sample": not request.greedy}
    if not request.greedy:
        sampling |= {
            "temperature": request.temperature,
            "top_k": request.top_k,
            "depth_decoder_temperature": request.temperature,
            "depth_decoder_top_k": request.top_k,
        }
    timings: dict[str, float] = {}
    with timed(tts.device, timings, "prompt_seconds"):
        inputs = tts.processor.apply_chat_template(conversation, tokenize=True, return_dict=True).to(tts.device)
    with timed(tts.device, timings, "generation_seconds"):
        frames = tts.model.generate(
            **inputs,
            max_new_tokens=request.max_frames,
            suppress_tokens=specials,
            depth_decoder_suppress_tokens=specials,
            **sampling,
        )[0]
    # The official rule, as in voxport's engine: a frame whose 32 codebooks are all end-of-audio ends the speech.
    # (transformers' generate stops earlier, on a frame whose first 31 are: that frame is kept as audio.)
    ends = ends_audio(frames, config.codebook_eos_token_id).nonzero()
    codes = frames[: int(ends[0]) if len(ends) else len(frames)]
    with timed(tts.device, timings, "decode_seconds"):
        audio = tts.decode(codes)
    return SynthesisResult(
        audio=audio, sample_rate=tts.sample_rate, codes=codes.cpu().numpy(), seed=seed, timings=timings
    )


def _run(tts, embeds, starts, requests: list[SynthesisRequest], seeds: list[int], sizes):
    engine, step = tts.engine(embeds.shape[0])
    generators = [make_generator(tts.device, seed) for seed in seeds]
    return engine.run(
        embeds,
        starts,
        requests[0].sampling(),
        [request.max_frames for request in requests],
        [request.min_frames for request in requests],
        generators,
        sizes,
        step,
    )


def _batched_prompts(tts, requests: list[SynthesisRequest]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt embeddings left-padded to one length [batch, T, hidden], and where each row's prompt starts."""
    prompts = [tts.prompt_embeds(request)[0] for request in requests]
    length = max(prompt.shape[0] for prompt in prompts)
    for prompt, request in zip(prompts, requests):
        tts.check_context_length(prompt.shape[0], request.max_frames)
    embeds = prompts[0].new_zeros(len(prompts), length, prompts[0].shape[-1])
    for row, prompt in enumerate(prompts):
        embeds[row, length - prompt.shape[0] :] = prompt
    starts = torch.tensor([length - prompt.shape[0] for prompt in prompts], device=embeds.device)
    return embeds, starts


def _check_shared_sampling(requests: list[SynthesisRequest]) -> None:
    """A batch samples with one set of settings (seeds and frame limits are each row's own)."""
    if not requests:
        raise InputError("no texts to speak: expected at least one")
    if len({request.sampling() for request in requests}) > 1:
        raise InputError(
            "a batch shares its sampling (temperature, top-k, greedy): every request must use the same values"
        )
