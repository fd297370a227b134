"""The HTTP application: routes, auth, OpenAI-style errors, metrics; model work happens in the workers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from voxport import __version__
from voxport.errors import VoxportError
from voxport.models.csm import ContextTurn
from voxport.serve.audio_formats import MEDIA_TYPES, encode, pcm16, streaming_wav_header
from voxport.serve.chat import chat_job, completion, completion_events
from voxport.serve.chat_body import ChatBody
from voxport.serve.errors import APIError, validation_error
from voxport.serve.metrics import Metrics
from voxport.serve.replies import ReplyStore
from voxport.serve.speech import SpeechBody, SpeechJob, speech_request
from voxport.serve.streams import AsyncChunks, job_pieces
from voxport.serve.workers import Job, ModelWorker, QueueFull

RETRY_AFTER_SECONDS = 2


@dataclass
class Limits:
    max_input_chars: int = 4096
    max_audio_bytes: int = 25 * 2**20
    max_seconds: float = 60.0


@dataclass
class ServedModel:
    name: str
    family: str  # "csm" or "covo"
    model: object
    worker: ModelWorker
    speech_error: str | None = None  # covo: why spoken replies are unavailable, if they are
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class ServerState:
    models: dict[str, ServedModel]
    voices: dict[str, ContextTurn] = field(default_factory=dict)
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

    app.add_middleware(Gatekeeper, state=state)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": sorted(state.models)}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [
            {"id": served.name, "object": "model", "created": served.created, "owned_by": "voxport",
             "family": served.family} for served in state.models.values()]}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/audio/speech")
    async def speech(body: SpeechBody, request: Request):
        served = _model(state, body.model, "csm")
        limits = state.limits
        job = Job(SpeechJob(speech_request(body, state.voices, limits.max_input_chars, limits.max_seconds),
                            body.stream))
        tts = served.model
        if body.stream:
            job.chunks = AsyncChunks()
            _submit(served, job)
            return StreamingResponse(_stream_audio(job, tts.sample_rate, body.response_format),
                                     media_type=MEDIA_TYPES[body.response_format])
        result = await _answer(_submit(served, job), request)
        if result.audio_seconds:
            state.metrics.rtf.labels(served.name).observe(result.rtf)
        return Response(encode(result.audio, result.sample_rate, body.response_format),
                        media_type=MEDIA_TYPES[body.response_format])

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody, request: Request):
        served = _model(state, body.model, "covo")
        job_spec = chat_job(body, served.name, state.replies, state.limits.max_audio_bytes)
        speaking = job_spec.audio_format is not None
        if speaking and served.speech_error:
            raise APIError(400, f"model {served.name} cannot speak: {served.speech_error}", "modalities")
        rate = served.model.speech_decoder().sample_rate if speaking else None
        if job_spec.stream:
            job = _submit(served, Job(job_spec, chunks=AsyncChunks()))
            return StreamingResponse(completion_events(job, served.name, rate, state.replies),
                                     media_type="text/event-stream")
        turn = await _answer(_submit(served, Job(job_spec)), request)
        return JSONResponse(completion(served.name, turn, job_spec, rate, state.replies))

    return app


class Gatekeeper:
    """The API key check and per-request metrics, as plain ASGI: Starlette's BaseHTTPMiddleware would hide a
    client's disconnect from the route and finish a stream that failed half-way as if it had succeeded."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        key = self.state.api_key
        try:
            if key and scope["path"] != "/health" and Headers(scope=scope).get("authorization") != f"Bearer {key}":
                refusal = APIError(401, "missing or wrong API key: send Authorization: Bearer <key>",
                                   code="invalid_api_key")
                await refusal.response()(scope, receive, noting_status)
            else:
                await self.app(scope, receive, noting_status)
        finally:
            route = scope.get("route")
            endpoint = route.path if route is not None else "unrouted"  # bounded labels: templates, not paths
            metrics = self.state.metrics
            metrics.requests.labels(endpoint, str(status)).inc()
            if status >= 400:
                metrics.errors.labels(endpoint, str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def _model(state: ServerState, name: str, family: str) -> ServedModel:
    served = state.models.get(name)
    if served is None:
        raise APIError(404, f"model '{name}' is not served here: expected one of {', '.join(sorted(state.models))}",
                       "model", code="model_not_found")
    if served.family != family:
        raise APIError(400, f"model '{name}' does not serve this endpoint", "model")
    return served


def _submit(served: ServedModel, job: Job) -> Job:
    try:
        return served.worker.submit(job)
    except QueueFull:
        raise APIError(429, f"model {served.name} is busy: its queue is full, try again shortly",
                       kind="rate_limit_error", code="queue_full",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None


async def _answer(job: Job, request: Request):
    """The job's result; if the client leaves first, the job is cancelled: skipped if it has not started,
    stopped at its next step boundary if it has."""
    result = asyncio.wrap_future(job.future)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not result.done():
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


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: all that can come is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _stream_audio(job: Job, sample_rate: int, response_format: str):
    """Audio as it is made; a client that disconnects cancels the rest of the generation. A job that fails
    half-way raises here, which aborts the chunked transfer: the client sees a cut response, not a short one."""
    if response_format == "wav":
        yield streaming_wav_header(sample_rate)
    async for audio in job_pieces(job):
        yield pcm16(audio)
