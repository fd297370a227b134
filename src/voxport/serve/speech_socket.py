"""WS /v1/text-to-speech/{voice_id}/stream-input: text streamed in (an LLM's words as they come), speech streamed
out as soon as each chunk of it is sure, in ElevenLabs' text-to-speech WebSocket convention, which pipecat's and
LiveKit's ElevenLabs plugins and many LLM-to-voice pipelines already speak.

In: `{"text": " "}` opens (voice_settings and generation_config may ride along), `{"text": "Hello "}` pieces,
`{"flush": true}` (with or without text) speaks what is buffered now, `{"text": ""}` ends the input. Out:
`{"audio": <base64 pcm16>, "isFinal": false, "normalizedAlignment": null, "alignment": null}` pieces, then
`{"isFinal": true}`, and the socket closes (1000). Settings ride the query string: model_id, output_format
(pcm_<the model's rate>), seed, temperature, top_k, max_seconds, apply_text_normalization, inactivity_timeout.

The speech is the speech service's (SpeechInput): the same voices, seed, chunks, step limits and context as
POST /v1/audio/speech, so the whole text's audio comes out, sample for sample, unless a flush cuts it early.
A mistake in a message is answered `{"message", "error", "code"}` (ElevenLabs' error shape) and the socket goes
on; a wrong key, setting or an idle input closes it with 1008, as ElevenLabs does."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketState

from voxport.errors import VoxportError
from voxport.serve.audio_formats import pcm16
from voxport.serve.errors import APIError
from voxport.serve.fields import FiniteFloat, Seed, valid_text
from voxport.serve.speech import InputJob
from voxport.serve.streams import AsyncChunks, StreamFailed, job_pieces
from voxport.serve.workers import Job
from voxport.services.speech import InputChunk, SpeechInput, SpeechRequest, SpeechService

ROUTE = "/v1/text-to-speech/{voice_id}/stream-input"
POLICY = 1008  # the close code ElevenLabs gives a wrong key, a wrong setting or an idle input
SERVER_FAILED = 1011


class SocketSettings(BaseModel):
    """The query string: ElevenLabs' names where it has one, then voxport's sampling controls."""

    model_config = ConfigDict(extra="forbid")
    model_id: str | None = None  # None: the one model that speaks text, if only one does
    output_format: str | None = None  # pcm_<rate> at the model's rate (the default)
    apply_text_normalization: Literal["auto", "on", "off"] = "auto"  # numbers, dates, ... read out unless "off"
    inactivity_timeout: Annotated[int, Field(ge=1, le=180)] = 20  # seconds without a message before closing
    enable_ssml_parsing: Literal[False] = False  # streamed text is plain text
    sync_alignment: bool = False  # accepted; alignment is null (no character timings)
    auto_mode: bool = False  # accepted; chunks go out as soon as they are sure either way
    enable_logging: bool = True  # accepted; no text is logged either way
    seed: Seed | None = None
    temperature: Annotated[FiniteFloat, Field(ge=0, le=2)] | None = None  # 0: greedy
    top_k: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    max_seconds: Annotated[FiniteFloat, Field(gt=0)] | None = None  # per chunk


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    chunk_length_schedule: list[int] | None = None  # accepted: chunks end where sentences do, not by count


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = None
    flush: bool = False
    try_trigger_generation: bool = False  # accepted: a chunk goes out as soon as it is sure either way
    voice_settings: dict[str, Any] | None = None  # ElevenLabs' voice knobs: none has a meaning here
    generation_config: GenerationConfig | None = None


class SocketError(Exception):
    """A mistake to tell the client in ElevenLabs' shape; `close`: the session cannot go on."""

    def __init__(self, error: str, message: str, close: bool = False):
        super().__init__(message)
        self.error, self.message, self.close = error, message, close


def speech_socket_routes(state: Any, model_of: Callable[[str], Any], submit: Callable[[Any, Job], Job]) -> APIRouter:
    """The socket's route. `model_of(name)`: the served model that speaks text (APIError if none);
    `submit(served, job)`: the job on that model's worker (APIError 429 when its queue is full)."""
    router = APIRouter()

    @router.websocket(ROUTE)
    async def stream_input(websocket: WebSocket, voice_id: str) -> None:
        await websocket.accept()
        started, closed = time.perf_counter(), POLICY
        try:
            closed = await _session(websocket, voice_id, state, model_of, submit)
        finally:
            state.metrics.requests.labels(ROUTE, str(closed)).inc()
            state.metrics.latency.labels(ROUTE).observe(time.perf_counter() - started)

    return router


async def _session(websocket: WebSocket, voice_id: str, state: Any, model_of: Callable, submit: Callable) -> int:
    """One client's input to its end; the close code it ended with."""
    try:
        _authorize(websocket, state.api_key)
        served, stream = _open(websocket, voice_id, state, model_of)
        timeout = SocketSettings.model_validate(dict(websocket.query_params)).inactivity_timeout
    except SocketError as error:
        return await _fail(websocket, state, error, POLICY)
    releases: asyncio.Queue[tuple[list[InputChunk], bool]] = asyncio.Queue()
    speaker = asyncio.create_task(_speak(websocket, state, served, stream, releases, submit))
    try:
        while not speaker.done():
            try:
                raw = await asyncio.wait_for(websocket.receive_text(), timeout)
            except asyncio.TimeoutError:
                idle = SocketError(
                    "input_timeout_exceeded",
                    f"no text came within {timeout} s: send text in time, or the end of input "
                    '({"text": ""}) when done (inactivity_timeout sets the wait, up to 180 s)',
                )
                return await _fail(websocket, state, idle, POLICY)
            except WebSocketDisconnect:
                return 1001  # the client left: the speaker is cancelled below, and its job with it
            except KeyError:  # a binary frame
                raw = None
            try:
                chunks, ended = _take(raw, stream, state.limits)
            except SocketError as error:
                await _tell(websocket, state, error)
                continue
            if chunks or ended:
                releases.put_nowait((chunks, ended))
            if ended:
                return await speaker
        return await speaker
    finally:
        speaker.cancel()


def _authorize(websocket: WebSocket, api_key: str | None) -> None:
    """The HTTP server's key, sent as `Authorization: Bearer <key>` or as ElevenLabs' `xi-api-key` header."""
    headers = websocket.headers
    if api_key and api_key not in (headers.get("xi-api-key"), headers.get("authorization", "").removeprefix("Bearer ")):
        raise SocketError(
            "invalid_api_key", "missing or wrong API key: send Authorization: Bearer <key> (or xi-api-key: <key>)"
        )


def _open(websocket: WebSocket, voice_id: str, state: Any, model_of: Callable) -> tuple[Any, SpeechInput]:
    """The model, voice and settings of the session, every one checked before any text comes."""
    try:
        settings = SocketSettings.model_validate(dict(websocket.query_params))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            raise SocketError(
                "invalid_settings",
                f"unknown setting {where}: expected {', '.join(SocketSettings.model_fields)}",
            ) from None
        raise SocketError("invalid_settings", f"{where}: {problem['msg']}") from None
    try:
        served = model_of(settings.model_id or _only_speaker(state))
        service: SpeechService = served.service
        rate = service.sample_rate
        if settings.output_format not in (None, "pcm", f"pcm_{rate}"):
            raise APIError(
                400, f"output_format {settings.output_format!r}: expected pcm_{rate} (16-bit PCM at the model's rate)"
            )
        if settings.max_seconds is not None and settings.max_seconds > state.limits.max_seconds:
            raise APIError(400, f"max_seconds must be in (0, {state.limits.max_seconds}]")
        voice = state.voices.resolve({"id": voice_id} if voice_id.startswith("voice_") else voice_id, rate)
        request = SpeechRequest(
            text="",
            speaker=voice.speaker,
            voice=voice.context,
            seed=settings.seed,
            temperature=settings.temperature,
            top_k=settings.top_k,
            max_seconds=settings.max_seconds,
            normalize=settings.apply_text_normalization != "off",
        )
        return served, SpeechInput(service, request)
    except (APIError, VoxportError) as error:
        raise SocketError("invalid_settings", str(error)) from None


def _only_speaker(state: Any) -> str:
    speakers = [name for name, served in state.models.items() if isinstance(served.service, SpeechService)]
    if len(speakers) != 1:
        raise APIError(400, f"model_id is missing: expected one of {', '.join(sorted(speakers)) or '(none)'}")
    return speakers[0]


def _take(raw: str | None, stream: SpeechInput, limits: Any) -> tuple[list[InputChunk], bool]:
    """One message: the chunks it makes sure, and whether it ends the input."""
    if raw is None:
        raise SocketError("invalid_input_message", 'expected a JSON text message such as {"text": "Hello "}')
    if len(raw) > limits.max_json_bytes:
        raise SocketError(
            "invalid_input_message", f"a message has {len(raw)} characters; the limit is {limits.max_json_bytes}"
        )
    try:
        message = InputMessage.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as error:
        raise SocketError("invalid_input_message", _explain(error)) from None
    text = valid_text(message.text or "", "text") if message.text is not None else None
    if text is not None and stream.chars + len(text) > limits.max_input_chars:
        raise SocketError(
            "input_too_long",
            f"the text would have {stream.chars + len(text)} characters; the limit is {limits.max_input_chars} "
            "(this piece was not taken: end the input, or flush and open a new socket)",
        )
    chunks: list[InputChunk] = []
    try:
        if text == "":
            return stream.flush(end=True), True
        if text:
            chunks = stream.add(text)
        if message.flush:
            chunks += stream.flush()
    except VoxportError as error:
        raise SocketError("invalid_input_message", str(error)) from None
    if message.voice_settings:
        raise SocketError(
            "unsupported_setting",
            "voice_settings are not applied here (the voice is the path's voice_id; sampling rides the query: "
            "seed, temperature, top_k); the text was taken",
        )
    return chunks, False


def _explain(error: Exception) -> str:
    if not isinstance(error, ValidationError):
        return 'the message is not valid JSON: expected an object such as {"text": "Hello "}'
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "the message"
    if problem["type"] == "extra_forbidden":
        return f"unknown field {where}: expected {', '.join(InputMessage.model_fields)}"
    return f"{where}: {problem['msg']}"


async def _speak(
    websocket: WebSocket,
    state: Any,
    served: Any,
    stream: SpeechInput,
    releases: asyncio.Queue[tuple[list[InputChunk], bool]],
    submit: Callable,
) -> int:
    """Speaks each release in turn on the model's worker and sends its audio as it is made; after the input's
    end, `{"isFinal": true}` and a normal close."""
    while True:
        chunks, ended = await releases.get()
        try:
            job = submit(served, Job(InputJob(stream, chunks, ended), chunks=AsyncChunks()))
        except APIError as error:
            return await _fail(websocket, state, SocketError(error.code or "busy", error.message), SERVER_FAILED)
        samples, compute = 0, 0.0
        try:
            async for piece in job_pieces(job):
                samples, compute = samples + len(piece.spoken.audio), compute + piece.spoken.compute_seconds
                if len(piece.spoken.audio):
                    await websocket.send_json(
                        {
                            "audio": base64.b64encode(pcm16(piece.spoken.audio)).decode(),
                            "isFinal": False,
                            "normalizedAlignment": None,
                            "alignment": None,
                        }
                    )
        except StreamFailed as failure:
            message = f"the model failed: {failure}"
            return await _fail(websocket, state, SocketError("server_error", message), SERVER_FAILED)
        except (WebSocketDisconnect, RuntimeError):  # the client left while audio went out: the job was cancelled
            return 1001
        if samples:
            state.metrics.rtf.labels(served.name).observe(compute / (samples / stream.service.sample_rate))
        if ended:
            await websocket.send_json({"isFinal": True})
            await websocket.close(1000)
            return 1000


async def _tell(websocket: WebSocket, state: Any, error: SocketError) -> None:
    state.metrics.errors.labels(ROUTE, error.error).inc()
    await websocket.send_json({"message": error.message, "error": error.error, "code": POLICY})


async def _fail(websocket: WebSocket, state: Any, error: SocketError, code: int) -> int:
    """Tells the client why, and closes the socket with `code`."""
    if websocket.client_state == WebSocketState.CONNECTED:
        state.metrics.errors.labels(ROUTE, error.error).inc()
        await websocket.send_json({"message": error.message, "error": error.error, "code": code})
        await websocket.close(code, error.error)
    return code
