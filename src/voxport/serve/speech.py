"""POST /v1/audio/speech on any model that speaks text: OpenAI's request shape in; audio out whole, as raw bytes
while they are made (stream_format "audio"), or as server-sent events (stream_format "sse").

With "timestamps": true the chunk and word timings come too: as one speech.timestamps event before
speech.audio.done in the SSE stream, or, for a whole answer, in a JSON envelope (application/json) that holds the
audio file in base64 beside them. A raw audio stream has no room for them: it is refused."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxport.audio.speed import MAX_SPEED, MIN_SPEED, change_speed
from voxport.errors import VoxportError
from voxport.serve.audio_formats import MEDIA_TYPES, STREAMABLE, encode, pcm16, streaming_wav_header, supported_formats
from voxport.serve.errors import APIError
from voxport.serve.fields import FiniteFloat, Seed
from voxport.serve.streams import StreamFailed, job_pieces
from voxport.serve.voices import VoiceBook
from voxport.serve.workers import Job, step_boundary
from voxport.services.speech import (
    InputChunk,
    SpeechInput,
    SpeechPlan,
    SpeechRequest,
    SpeechResult,
    SpeechService,
    timestamps_record,
)


class VoiceId(BaseModel):
    """A custom voice by id, as OpenAI's SDK sends it: {"id": "voice_..."}."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: str


class SpeechBody(BaseModel):
    """OpenAI's fields, then voxport's own: sampling controls and a cap on each chunk's audio."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str
    input: str
    voice: str | VoiceId = "alloy"
    instructions: str | None = None  # refused: no served model takes style instructions
    response_format: str = "wav"
    speed: Annotated[FiniteFloat, Field(ge=MIN_SPEED, le=MAX_SPEED)] = 1.0
    stream_format: Literal["audio", "sse"] | None = None  # None: the whole file at once
    stream: bool = False  # voxport's earlier switch, the same as stream_format "audio"
    temperature: Annotated[FiniteFloat, Field(ge=0, le=2)] | None = None  # 0: greedy; None: the model's
    top_k: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None  # 0: no top-k filter; None: the model's
    seed: Seed | None = None
    max_seconds: Annotated[FiniteFloat, Field(gt=0)] | None = None  # per chunk; None: from its text
    normalize: bool = True  # numbers, dates, money, ... read out (docs/text.md)
    ssml: bool | None = None  # None: SSML when the input starts with <speak>; false: plain text
    timestamps: bool = False  # chunk and word timings: an SSE event, or a JSON envelope around the audio

    @property
    def streamed(self) -> str | None:
        return self.stream_format or ("audio" if self.stream else None)


@dataclass(frozen=True)
class SpeechJob:
    plan: SpeechPlan
    streamed: bool  # hand out pieces as they are made


def parse_speech_body(raw: object) -> SpeechBody:
    """The body, or a 400 naming every unknown field, or the first field out of range."""
    try:
        return SpeechBody.model_validate(raw)
    except ValidationError as error:
        problems = error.errors()
        if any(problem["loc"][:1] == ("voice",) for problem in problems):
            raise APIError(
                400, 'voice: expected a voice name, a speaker id, or {"id": "<custom voice id>"}', "voice"
            ) from None
        unknown = [".".join(map(str, problem["loc"])) for problem in problems if problem["type"] == "extra_forbidden"]
        if unknown:
            raise APIError(
                400,
                f"unknown field{'s' * (len(unknown) > 1)} {', '.join(unknown)}: expected "
                f"{', '.join(SpeechBody.model_fields)}",
                unknown[0],
            ) from None
        where = ".".join(str(part) for part in problems[0]["loc"]) or None
        raise APIError(400, f"{where + ': ' if where else ''}{problems[0]['msg']}", where) from None


def speech_job(
    body: SpeechBody,
    service: SpeechService,
    model_name: str,
    voices: VoiceBook,
    max_input_chars: int,
    max_seconds: float,
) -> SpeechJob:
    """Every check that can be made before the work: a request that passes is spoken whole."""
    if body.instructions is not None:
        raise APIError(
            400,
            f"model {model_name} does not take instructions: describe the voice with a voice "
            f"sample instead (custom voices)",
            "instructions",
        )
    if not body.input.strip():
        raise APIError(400, "input is empty: expected text to speak", "input")
    if len(body.input) > max_input_chars:
        raise APIError(400, f"input has {len(body.input)} characters; the limit is {max_input_chars}", "input")
    if body.response_format not in supported_formats():
        raise APIError(
            400,
            f"response_format '{body.response_format}' is not available here: expected one of "
            f"{', '.join(supported_formats())}",
            "response_format",
        )
    if body.max_seconds is not None and body.max_seconds > max_seconds:
        raise APIError(400, f"max_seconds must be in (0, {max_seconds}]", "max_seconds")
    if body.timestamps and body.streamed == "audio":
        raise APIError(
            400,
            'timestamps cannot ride a raw audio stream: use stream_format "sse", or no stream (a JSON envelope)',
            "timestamps",
        )
    if body.timestamps and body.speed != 1.0:
        raise APIError(400, "timestamps are timed at speed 1.0: drop speed or timestamps", "timestamps")
    voice = voices.resolve(body.voice if isinstance(body.voice, str) else {"id": body.voice.id}, service.sample_rate)
    request = SpeechRequest(
        text=body.input,
        speaker=voice.speaker,
        voice=voice.context,
        seed=body.seed,
        temperature=body.temperature,
        top_k=body.top_k,
        max_seconds=body.max_seconds,
        normalize=body.normalize,
        ssml=body.ssml,
        timestamps=body.timestamps,
    )
    return SpeechJob(service.plan(request), body.streamed is not None)


@dataclass(frozen=True)
class InputJob:
    """Chunks of text streamed in (the speech socket) that are ready to speak, in the order handed out."""

    stream: SpeechInput
    chunks: list[InputChunk]
    ended: bool  # the input has ended


def batch_key(job: Job):
    """Jobs with this key in common can share one batch (each with its own length and seed); streams run alone."""
    speech = job.payload
    return speech.plan.batch_key if isinstance(speech, SpeechJob) and not speech.streamed else None


def run_speech(service: SpeechService, jobs: list[Job]) -> None:
    """The worker's side: one stream, one stretch of streamed-in text, or one batch of whole texts."""
    first = jobs[0].payload
    if isinstance(first, InputJob):
        job, made = jobs[0], 0
        assert job.chunks is not None  # a streamed job has its sink
        for piece in first.stream.pieces(first.chunks, first.ended):
            made += piece.spoken.output_tokens
            step_boundary(jobs, made)
            job.chunks.put(piece)
        job.future.set_result(made)
        job.chunks.put(None)
    elif first.streamed:
        job, made, pieces = jobs[0], 0, []
        assert job.chunks is not None  # a streamed job has its sink
        timed = first.plan.request.timestamps
        for piece in service.pieces(first.plan):
            made += piece.spoken.output_tokens
            step_boundary(jobs, made)
            job.chunks.put(piece)
            if timed:
                pieces.append(piece)
        chunk_times, words = service.times(first.plan, pieces) if timed else ([], None)
        job.future.set_result(
            SpeechResult(
                np.zeros(0, np.float32),
                service.sample_rate,
                made,
                first.plan.seed,
                len(first.plan.chunks),
                None,
                chunk_times=chunk_times,
                words=words,
            )
        )
        job.chunks.put(None)
    else:
        results = service.speak_plans(
            [job.payload.plan for job in jobs], on_step=lambda steps: step_boundary(jobs, steps)
        )
        for job, result in zip(jobs, results):
            job.future.set_result(result)


async def speech_response(result: SpeechResult, body: SpeechBody, plan: SpeechPlan) -> Response:
    """The audio file, or with timestamps a JSON envelope: the file in base64 beside the timings."""
    audio = await asyncio.to_thread(change_speed, result.audio, body.speed)
    data = encode(audio, result.sample_rate, body.response_format)
    if not body.timestamps:
        return Response(data, media_type=MEDIA_TYPES[body.response_format])
    return JSONResponse(
        {
            "audio": base64.b64encode(data).decode(),
            "response_format": body.response_format,
            "sample_rate": result.sample_rate,
            **timestamps_record(plan, result.chunk_times, result.words),
        }
    )


async def audio_stream(job: Job, sample_rate: int, body: SpeechBody) -> AsyncIterator[bytes]:
    """Encoded audio as it is made. wav and pcm go out piece by piece (with a speed change, a text chunk at a
    time); flac, mp3 and opus are encoded whole, so they come in one piece at the end. A failure raises."""
    progressive = body.response_format in STREAMABLE

    async def encoded(held: list[np.ndarray]) -> bytes:
        audio = await asyncio.to_thread(change_speed, np.concatenate(held), body.speed)
        return pcm16(audio) if progressive else encode(audio, sample_rate, body.response_format)

    if body.response_format == "wav":
        yield streaming_wav_header(sample_rate)
    held: list[np.ndarray] = []
    chunk = 0
    async for piece in job_pieces(job):  # raises StreamFailed when the job fails half-way
        if held and progressive and piece.chunk != chunk:
            yield await encoded(held)
            held = []
        held.append(piece.spoken.audio)
        chunk = piece.chunk
        if progressive and body.speed == 1.0:
            yield await encoded(held)
            held = []
    if held:
        yield await encoded(held)


async def sse_events(job: Job, sample_rate: int, body: SpeechBody, input_tokens: int) -> AsyncIterator[bytes]:
    """speech.audio.delta events (base64 audio), then speech.audio.done with usage; a failure mid-way ends the
    stream with an error event instead of the done event."""
    try:
        async for data in audio_stream(job, sample_rate, body):
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except Exception as failure:
        error = failure.__cause__ if isinstance(failure, StreamFailed) else failure
        if isinstance(error, (APIError, VoxportError)):  # the request asked for what cannot be done
            message, kind = str(error), "invalid_request_error"
        else:
            message, kind = f"the model failed: {type(error).__name__}: {error}", "server_error"
        yield _event(
            {"type": "error", "error": {"message": message, "type": kind, "param": None, "code": None}}, "error"
        )
        return
    result = job.future.result()
    made = result.steps
    if body.timestamps:
        speech: SpeechJob = job.payload
        yield _event({"type": "speech.timestamps", **timestamps_record(speech.plan, result.chunk_times, result.words)})
    yield _event(
        {
            "type": "speech.audio.done",
            "usage": {"input_tokens": input_tokens, "output_tokens": made, "total_tokens": input_tokens + made},
        }
    )


def _event(payload: dict, name: str | None = None) -> bytes:
    return ((f"event: {name}\n" if name else "") + f"data: {json.dumps(payload)}\n\n").encode()
