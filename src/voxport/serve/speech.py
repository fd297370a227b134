"""POST /v1/audio/speech (CSM): OpenAI's request shape in, audio out, whole or streamed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from voxport.errors import VoxportError
from voxport.models.csm import ContextTurn, SynthesisRequest
from voxport.serve.audio_formats import STREAMABLE, supported_formats
from voxport.serve.errors import APIError
from voxport.serve.fields import FiniteFloat, Seed
from voxport.serve.workers import Job, step_boundary

FRAME_SECONDS = 0.08


class SpeechBody(BaseModel):
    """OpenAI's fields (model, input, voice, response_format, stream) plus sampling and a length cap."""

    model_config = ConfigDict(extra="ignore")
    model: str
    input: str
    voice: str = "0"
    response_format: str = "wav"
    stream: bool = False
    temperature: FiniteFloat = 0.9  # 0 = greedy
    top_k: int = 50
    seed: Seed | None = None
    max_seconds: FiniteFloat = 10.0


@dataclass(frozen=True)
class SpeechJob:
    request: SynthesisRequest
    stream: bool


def speech_request(body: SpeechBody, voices: dict[str, ContextTurn], max_input_chars: int,
                   max_seconds: float) -> SynthesisRequest:
    if not body.input.strip():
        raise APIError(400, "input is empty: expected text to speak", "input")
    if len(body.input) > max_input_chars:
        raise APIError(400, f"input has {len(body.input)} characters; the limit is {max_input_chars}", "input")
    if body.response_format not in supported_formats():
        raise APIError(400, f"response_format '{body.response_format}' is not available here: expected one of "
                            f"{', '.join(supported_formats())}", "response_format")
    if body.stream and body.response_format not in STREAMABLE:
        raise APIError(400, f"streaming sends {' or '.join(STREAMABLE)}, not {body.response_format}",
                       "response_format")
    if not 0 < body.max_seconds <= max_seconds:
        raise APIError(400, f"max_seconds must be in (0, {max_seconds}]", "max_seconds")
    if body.temperature < 0 or body.top_k < 0:
        raise APIError(400, "temperature and top_k must not be negative", "temperature")
    if body.voice.isdigit():
        speaker, context = int(body.voice), ()
    elif body.voice in voices:
        speaker, context = voices[body.voice].speaker, (voices[body.voice],)
    else:
        named = ", ".join(["0", "1", *sorted(voices)])
        raise APIError(400, f"unknown voice '{body.voice}': expected a speaker id or one of {named}", "voice",
                       code="voice_not_found")
    try:
        return SynthesisRequest(
            text=body.input, speaker=speaker, context=context, max_frames=math.ceil(body.max_seconds / FRAME_SECONDS),
            temperature=body.temperature or 1.0, top_k=body.top_k, seed=body.seed, greedy=body.temperature == 0,
        )
    except VoxportError as error:
        raise APIError(400, str(error), "input") from None


def batch_key(job: Job):
    """Jobs with this key in common can share one batch; streams run alone."""
    speech: SpeechJob = job.payload
    if speech.stream:
        return None
    request = speech.request
    return (request.max_frames, request.min_frames, request.temperature, request.top_k, request.greedy, request.seed)


def run_speech(tts, jobs: list[Job]) -> None:
    """The worker's side: one stream, or one batch of whole requests."""
    first: SpeechJob = jobs[0].payload
    if first.stream:
        job = jobs[0]
        made, frames = 0.0, 0
        for chunk in tts.stream(first.request):
            frames += len(chunk.codes)
            step_boundary(jobs, frames)
            job.chunks.put(chunk.audio)
            made = chunk.seconds_since_start
        job.chunks.put(None)
        job.future.set_result(made)
        return
    results = tts.generate_batch([job.payload.request for job in jobs],
                                 on_frame=lambda frames: step_boundary(jobs, frames))
    for job, result in zip(jobs, results):
        job.future.set_result(result)
