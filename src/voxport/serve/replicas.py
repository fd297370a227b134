"""Serving on every device: model replicas on Ray Serve behind one HTTP entry.

Each replica (`ModelReplica`, one Ray Serve deployment per served model) holds one model on one device and runs
the single-process server's own app (serve/app.py) over that model: routes, bodies, errors, batching, streaming
and cancellation are that app's. The entry (`entry_app`, in the `voxport serve` process) checks the API key,
answers the custom-voice routes itself (the one writer of `--voices-dir`), and hands each model request to a
replica of the named model through a Ray Serve handle, which picks the least busy one. A request travels as
its method, path, headers and body; the response comes back as its start (status, headers), then its body
pieces as the replica's app sends them. A client that leaves cancels the handle's call: the replica's app then
hears the disconnect, as the single-process server does, and stops the job. A WebSocket goes to one replica for its life
(socket_tunnel.py).

What a conversation or a voice needs lives on disk, seen by every replica and kept across restarts: custom
voices in `--voices-dir` (replicas follow it, voices.py), spoken replies behind `audio.id` in its `replies/`
folder (replies.py). Replicas post their metrics to a board actor; the entry's /metrics shows them with a
`replica` label (a live replica's node:pid, so the label set stays as small as the set of replicas up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import WebSocketRoute

from voxport.errors import VoxportError
from voxport.serve.app import Limits, ServerState, client_gone, create_app, finished_unless_client_leaves
from voxport.serve.bodies import json_object
from voxport.serve.errors import APIError
from voxport.serve.metrics import Metrics
from voxport.serve.realtime import ENDPOINT as REALTIME
from voxport.serve.replies import ReplyStore
from voxport.serve.socket_tunnel import Tunnel, converse
from voxport.serve.speech_socket import ROUTE as SPEECH_SOCKET
from voxport.serve.voices import VoiceBook

APP_PREFIX = "voxport-"  # each model's Ray Serve application: voxport-NAME
REPLICA_HEADER = "x-voxport-replica"  # which replica answered (its node:pid), on every model response
POST_SECONDS = 1.0  # how often a replica posts its metrics to the board
STALE_SECONDS = 10.0  # a replica silent this long is gone: its metrics leave /metrics
AUTO_TARGET_REQUESTS = 2  # --replicas auto: Ray Serve adds a replica when each has more requests than this
REPLIES_FOLDER = "replies"  # spoken replies, under the voices directory every replica sees
_CAPABILITY_ROUTES = {"speaks_text": ("speech", "speak text"), "answers_audio": ("audio_chat", "answer audio")}
_SOCKETS = [(REALTIME, "model", "answers_audio"), (SPEECH_SOCKET, "model_id", "speaks_text")]  # route, model param
_SOCKET_ROUTES = {route for route, _, _ in _SOCKETS}


def require_serve() -> ModuleType:
    """Ray Serve itself, or one line saying how to install it."""
    try:
        from ray import serve
    except ImportError:
        raise VoxportError(
            "Ray Serve is not installed (needed for --replicas and --cluster): "
            "pip install 'voxport[serve]' (or 'ray[serve]>=2.40')"
        ) from None
    return serve


@dataclass(frozen=True)
class ReplicaSettings:
    """What every replica of every model is built with (the command line's model-independent choices)."""

    device: str
    dtype: str
    max_queue: int
    max_batch: int
    limits: Limits
    voices_dir: Path | None
    named_voices: dict[str, tuple[str, str]]
    api_key: str | None  # checked again by each replica's app: sockets reach it with their handshake's headers


class ReplicaBoard:
    """A Ray actor: each replica's latest metrics text, by model and replica."""

    def __init__(self):
        self.posts: dict[tuple[str, str], tuple[float, bytes]] = {}

    def post(self, model: str, replica: str, text: bytes) -> None:
        self.posts[(model, replica)] = (time.time(), text)

    def read(self) -> list[tuple[str, str, bytes]]:
        """The posts of replicas still alive (posted lately); the others are forgotten."""
        now = time.time()
        self.posts = {key: post for key, post in self.posts.items() if now - post[0] < STALE_SECONDS}
        return [(model, replica, text) for (model, replica), (_, text) in self.posts.items()]


class ModelReplica:
    """One model on one device, serving the single-process app over it (a Ray Serve deployment's class)."""

    def __init__(self, name: str, source: str, settings: ReplicaSettings, board: Any, inbox: Any):
        import ray

        from voxport.runtime.devices import resolve_device, resolve_dtype
        from voxport.serve.server import load_models

        device = resolve_device(settings.device)
        models = load_models(
            [f"{name}={source}"],
            device,
            resolve_dtype(settings.dtype, device),
            settings.max_queue,
            settings.max_batch,
            progress=lambda line: None,
        )
        replies = ReplyStore(directory=settings.voices_dir / REPLIES_FOLDER) if settings.voices_dir else ReplyStore()
        self.state = ServerState(
            models=models,
            voices=VoiceBook(settings.voices_dir, settings.named_voices),
            api_key=settings.api_key,
            limits=settings.limits,
            replies=replies,
        )
        self.app = create_app(self.state)
        self.name, self.label = name, f"{ray.util.get_node_ip_address()}:{os.getpid()}"
        self.board, self.inbox = board, inbox
        threading.Thread(target=self._post_metrics, name="voxport-metrics", daemon=True).start()

    def _post_metrics(self) -> None:
        while True:
            with suppress(Exception):  # the board is gone (the entry is restarting): the next post tries again
                self.board.post.remote(self.name, self.label, self.state.metrics.render())
            time.sleep(POST_SECONDS)

    async def exchange(
        self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> AsyncIterator[Any]:
        """One HTTP request through this replica's app: first {"status", "headers"}, then the body's pieces."""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "client": None,
            "server": None,
            "headers": [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers],
        }
        messages: asyncio.Queue = asyncio.Queue()
        gone, read = asyncio.Event(), False

        async def receive() -> dict:
            nonlocal read
            if not read:
                read = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()  # all that can come after the body is the client leaving
            return {"type": "http.disconnect"}

        task = asyncio.ensure_future(self.app(scope, receive, messages.put))
        task.add_done_callback(lambda _: messages.put_nowait(None))
        try:
            while (message := await messages.get()) is not None:
                if message["type"] == "http.response.start":
                    kept = [
                        (key.decode("latin-1"), value.decode("latin-1"))
                        for key, value in message["headers"]
                        if key.lower() != b"content-length"
                    ]
                    yield {"status": message["status"], "headers": [*kept, (REPLICA_HEADER, self.label)]}
                elif message.get("body"):
                    yield message["body"]
            task.result()  # a stream the app failed half-way fails here too: the entry aborts the transfer
        finally:
            gone.set()  # cancelled (the client left): the app hears the disconnect and stops the job

    async def converse(self, scope: dict, session: str) -> AsyncIterator[dict]:
        """One WebSocket through this replica's app (socket_tunnel.py): the ASGI messages the app sends."""
        async for message in converse(self.app, scope, self.inbox, session):
            if message["type"] == "websocket.accept":
                replica = (REPLICA_HEADER.encode(), self.label.encode())
                message = {**message, "headers": [*message.get("headers", []), replica]}
            yield message


@dataclass(frozen=True)
class Deployed:
    name: str
    family: str
    capability: str  # the registry's: what routes the model serves
    handle: Any  # Ray Serve's handle to the model's replicas


def deploy(
    serve: ModuleType,
    models: dict[str, tuple[str, str, str]],
    settings: ReplicaSettings,
    replicas: int | str,
    board: Any,
    inbox: Any,
) -> dict[str, Deployed]:
    """Every model (name -> source, family, capability) as a Ray Serve application of `replicas` replicas, or
    autoscaled from one to `replicas` ("auto:N"), each asking for one device of the settings' kind."""
    from voxport.batch.cluster import device_request

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # voxport says what starts; failures still show
    serve.start(proxy_location="Disabled")  # the entry is voxport's own server: Ray Serve opens no port
    deployed = {}
    for name, (source, family, capability) in models.items():
        scaling: dict[str, Any]
        if isinstance(replicas, str):
            most = int(replicas.split(":")[1])
            scaling = {
                "autoscaling_config": {
                    "min_replicas": 1,
                    "max_replicas": most,
                    "target_ongoing_requests": AUTO_TARGET_REQUESTS,
                }
            }
        else:
            scaling = {"num_replicas": replicas}
        deployment = serve.deployment(
            ModelReplica,
            name=name,
            ray_actor_options=device_request(settings.device),
            max_ongoing_requests=settings.max_queue + settings.max_batch,
            **scaling,
        )
        handle = serve.run(
            deployment.bind(name, source, settings, board, inbox), name=APP_PREFIX + name, route_prefix=None
        )
        deployed[name] = Deployed(name, family, capability, handle.options(stream=True))
    return deployed


def replicas_up(serve: ModuleType, names: list[str]) -> dict[str, int]:
    """How many replicas of each model are running now."""
    applications = serve.status().applications
    counts = {}
    for name in names:
        application = applications.get(APP_PREFIX + name)
        deployment = application.deployments.get(name) if application else None
        counts[name] = int(deployment.replica_states.get("RUNNING", 0)) if deployment else 0
    return counts


def entry_app(
    deployed: dict[str, Deployed],
    voices: VoiceBook,
    api_key: str | None,
    limits: Limits,
    channels: tuple[Any, Any],
    serve: ModuleType,
) -> FastAPI:
    """The single-process app over no local model (auth, errors, voices), with the model routes, the sockets,
    /health, /v1/models and /metrics answered through the replicas. `channels`: the metrics board and the
    sockets' inbox (Ray actors)."""
    board, inbox = channels
    state = ServerState(models={}, voices=voices, api_key=api_key, limits=limits)
    app = create_app(state)
    router = APIRouter()
    created = int(time.time())

    @router.get("/health")
    async def health():
        up = await asyncio.to_thread(replicas_up, serve, sorted(deployed))
        return {"status": "ok" if all(up.values()) else "degraded", "models": sorted(deployed), "replicas": up}

    @router.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": model.name,
                    "object": "model",
                    "created": created,
                    "owned_by": "voxport",
                    "family": model.family,
                    "capabilities": [_CAPABILITY_ROUTES[model.capability][0]],
                }
                for model in deployed.values()
            ],
        }

    @router.get("/metrics")
    async def metrics():
        posts = await asyncio.wrap_future(board.read.remote().future())
        registry = CollectorRegistry()
        registry.register(_Gathered(state.metrics, posts))
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.post("/v1/audio/speech")
    async def speech(request: Request):
        return await _forward(request, "speaks_text", limits.max_json_bytes)

    @router.post("/v1/chat/completions")
    async def chat(request: Request):
        return await _forward(request, "answers_audio", limits.chat_body_bytes())

    async def _forward(request: Request, capability: str, limit: int):
        body = await json_object(request, limit)
        model = _model(deployed, body.get("model"), capability)
        headers = [(key, value) for key, value in request.headers.items() if key not in ("content-length", "host")]
        pieces = model.handle.exchange.remote(
            request.method, request.url.path, request.url.query, headers, json.dumps(body).encode()
        )
        start = asyncio.ensure_future(pieces.__anext__())
        if not await finished_unless_client_leaves(start, request):
            pieces.cancel()
            start.cancel()
            raise APIError(499, "client closed the request")
        try:
            head = start.result()
        except Exception as error:  # a replica that died, or could not be reached
            raise APIError(
                503,
                f"model {model.name}: its replica failed before answering ({type(error).__name__}); try again",
                kind="server_error",
                code="replica_failed",
            ) from None
        return StreamingResponse(_rest(pieces, request), status_code=head["status"], headers=dict(head["headers"]))

    for route, param, capability in _SOCKETS:
        router.routes.append(WebSocketRoute(route, Tunnel(param, partial(_socket_model, deployed, capability), inbox)))
    app.router.routes[:0] = router.routes  # ahead of the single-process server's routes of the same paths
    return app


async def _rest(pieces: Any, request: Request) -> AsyncIterator[bytes]:
    """The body's pieces as the replica sends them; a client that leaves cancels the replica's call, and a
    replica that fails half-way (died) aborts the transfer, so the client sees a cut stream."""
    gone = asyncio.ensure_future(client_gone(request))
    gone.add_done_callback(lambda task: task.cancelled() or pieces.cancel())
    try:
        async for piece in pieces:
            yield piece
    finally:
        gone.cancel()


def _model(deployed: dict[str, Deployed], name: object, capability: str) -> Deployed:
    """The replicas of model `name`, if it serves this route (the single-process server's errors). A body
    without a model name goes to any model of the route: its app refuses the body as the single process does."""
    able = [model for _, model in sorted(deployed.items()) if model.capability == capability]
    if not isinstance(name, str) and able:
        return able[0]
    model = deployed.get(name) if isinstance(name, str) else None
    if model is None:
        raise APIError(
            404,
            f"model '{name}' is not served here: expected one of {', '.join(sorted(deployed))}",
            "model",
            code="model_not_found",
        )
    if model.capability != capability:
        raise APIError(
            400,
            f"model '{name}' does not serve this endpoint: it cannot "
            f"{_CAPABILITY_ROUTES[capability][1]}"
            + (f"; {', '.join(other.name for other in able)} can" if able else ""),
            "model",
        )
    return model


def _socket_model(deployed: dict[str, Deployed], capability: str, name: str | None) -> Deployed:
    """The replicas a socket goes to. A name that does not fit still goes to a replica (of the route's kind if
    any): its app refuses it after checking the key, as the single-process server does (its error lists the
    models that replica holds)."""
    try:
        return _model(deployed, name, capability)
    except APIError:
        able = [model for _, model in sorted(deployed.items()) if model.capability == capability]
        return (able or [deployed[min(deployed)]])[0]


class _Gathered:
    """The entry's metrics of HTTP traffic (it sees every request), then every live replica's metrics of the work
    and of the sockets it serves, labelled by replica (their own count of the HTTP requests is left out)."""

    def __init__(self, entry: Metrics, posts: list[tuple[str, str, bytes]]):
        self.entry, self.posts = entry, posts

    def collect(self):
        merged = {
            family.name: family
            for metric in (self.entry.requests, self.entry.errors, self.entry.latency)
            for family in metric.collect()
        }
        traffic = set(merged)
        for _, replica, text in sorted(self.posts):
            for family in text_string_to_metric_families(text.decode()):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    if family.name not in traffic or sample.labels.get("endpoint") in _SOCKET_ROUTES:
                        labels = {**sample.labels, "replica": replica}
                        into.add_sample(sample.name, labels, sample.value, sample.timestamp)
        yield from merged.values()
