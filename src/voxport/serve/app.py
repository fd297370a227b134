"""The HTTP application: routes, auth, OpenAI-style errors, metrics; model work happens in the workers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from voxport import __version__
from voxport.errors import VoxportError
from voxport.serve.audio_formats import MEDIA_TYPES
from voxport.serve.bodies import json_object
from voxport.serve.chat import chat_job, completion, completion_events
from voxport.serve.chat_body import ChatBody
from voxport.serve.errors import APIError, validation_error
from voxport.serve.guard import GuardAndCount
from voxport.serve.limits import Limits
from voxport.serve.metrics import Metrics
from voxport.serve.realtime import serve_session
from voxport.serve.replies import ReplyStore
from voxport.serve.speech import audio_stream, parse_speech_body, speech_job, speech_response, sse_events
from voxport.serve.speech_socket import speech_socket_routes
from voxport.serve.streams import AsyncChunks
from voxport.serve.voice_api import voice_routes
from voxport.serve.voices import VoiceBook
from voxport.serve.workers import Job, ModelWorker, QueueFull
from voxport.services.chat import ChatService
from voxport.services.speech import SpeechService

RETRY_AFTER_SECONDS = 2


@dataclass
class ServedModel:
    name: str
    family: str  # the registry's family name, for listings; routing goes by the model's capabilities
    service: SpeechService | ChatService  # what the model does, as every door does it
    worker: ModelWorker
    speech_error: str | None = None  # a model that answers audio: why spoken replies are unavailable, if they are
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class ServerState:
    models: dict[str, ServedModel]
    voices: VoiceBook = field(default_factory=VoiceBook)
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    metrics: Metrics = field(default_factory=Metrics)
    replies: ReplyStore = field(default_factory=ReplyStore)  # spoken chat replies, by audio.id


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="voxport", version=__version__)
    for served in state.models.values():
        state.metrics.watch(served.name, served.worker)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        return error.response()

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, error: RequestValidationError | ValidationError):
        return validation_error(error.errors()).response()

    @app.exception_handler(VoxportError)
    async def refused(request: Request, error: VoxportError):
        return APIError(400, str(error)).response()

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception):
        return APIError(500, f"the server failed: {type(error).__name__}: {error}", kind="server_error").response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return APIError(error.status_code, str(error.detail), kind="invalid_request_error").response()

    app.add_middleware(GuardAndCount, api_key=state.api_key, metrics=state.metrics)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": sorted(state.models)}

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": served.name,
                    "object": "model",
                    "created": served.created,
                    "owned_by": "voxport",
                    "family": served.family,
                    "capabilities": [_CAPABILITIES[type(served.service)]],
                }
                for served in state.models.values()
            ],
        }

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        body = parse_speech_body(await json_object(request, state.limits.max_json_bytes))
        served = _model(state, body.model, SpeechService, "speak text")
        service, limits = served.service, state.limits
        assert isinstance(service, SpeechService)
        job = Job(speech_job(body, service, served.name, state.voices, limits.max_input_chars, limits.max_seconds))
        media_type = MEDIA_TYPES[body.response_format]
        if body.streamed:
            job.chunks = AsyncChunks()
            _submit(served, job)
            if body.streamed == "sse":
                events = sse_events(job, service.sample_rate, body, service.model.count_text_tokens(body.input))
                return StreamingResponse(events, media_type="text/event-stream")
            return StreamingResponse(audio_stream(job, service.sample_rate, body), media_type=media_type)
        result = await _answer(_submit(served, job), request)
        if result.audio_seconds:
            state.metrics.rtf.labels(served.name).observe(result.compute_seconds / result.audio_seconds)
        return await speech_response(result, body, job.payload.plan)

    app.include_router(voice_routes(state.voices))
    speaker = lambda name: _model(state, name, SpeechService, "speak text")
    app.include_router(speech_socket_routes(state, speaker, _submit))

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = ChatBody.model_validate(await json_object(request, state.limits.chat_body_bytes()))
        served = _model(state, body.model, ChatService, "answer audio")
        service = served.service
        assert isinstance(service, ChatService)
        job_spec = chat_job(body, service, served.name, state.replies, state.limits.max_audio_bytes)
        speaking = job_spec.audio_format is not None
        if speaking and served.speech_error:
            raise APIError(400, f"model {served.name} cannot speak: {served.speech_error}", "modalities")
        rate = service.speech_rate if speaking else None
        if job_spec.stream:
            job = _submit(served, Job(job_spec, chunks=AsyncChunks()))
            return StreamingResponse(
                completion_events(job, served.name, rate, state.replies), media_type="text/event-stream"
            )
        turn = await _answer(_submit(served, Job(job_spec)), request)
        return JSONResponse(completion(served.name, turn, job_spec, rate, state.replies))

    @app.websocket("/v1/realtime")
    async def realtime(socket: WebSocket):
        await serve_session(
            socket,
            lambda name: _model(state, name, ChatService, "answer audio"),
            state.api_key,
            state.limits,
            state.metrics,
        )

    return app


_CAPABILITIES = {SpeechService: "speech", ChatService: "audio_chat"}


def _model(state: ServerState, name: str, service: type, task: str) -> ServedModel:
    """The served model `name`, if it can do what the endpoint asks (the service of its declared capability)."""
    served = state.models.get(name)
    if served is None:
        raise APIError(
            404,
            f"model '{name}' is not served here: expected one of {', '.join(sorted(state.models))}",
            "model",
            code="model_not_found",
        )
    if not isinstance(served.service, service):
        able = [other for other, entry in sorted(state.models.items()) if isinstance(entry.service, service)]
        raise APIError(
            400,
            f"model '{name}' does not serve this endpoint: it cannot {task}"
            + (f"; {', '.join(able)} can" if able else ""),
            "model",
        )
    return served


def _submit(served: ServedModel, job: Job) -> Job:
    try:
        return served.worker.submit(job)
    except QueueFull:
        raise APIError(
            429,
            f"model {served.name} is busy: its queue is full, try again shortly",
            kind="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None


async def _answer(job: Job, request: Request):
    """The job's result; if the client leaves first, the job is cancelled: skipped if it has not started,
    stopped at its next step boundary if it has."""
    result = asyncio.wrap_future(job.future)
    if not await finished_unless_client_leaves(result, request):
        job.cancelled.set()
        raise APIError(499, "client closed the request")
    error = result.exception()
    if error is None:
        return result.result()
    if isinstance(error, APIError):
        raise error
    if isinstance(error, VoxportError):
        raise APIError(400, str(error))
    raise APIError(500, f"the model failed: {type(error).__name__}: {error}", kind="server_error")


async def finished_unless_client_leaves(work: asyncio.Future, request: Request) -> bool:
    """Waits for `work` or for the client to disconnect, whichever is first: whether `work` finished."""
    gone = asyncio.ensure_future(client_gone(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    return work.done()


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: all that can come is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
