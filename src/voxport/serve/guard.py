"""The API key check and the request metrics, as plain ASGI middleware.

Plain ASGI, not Starlette's BaseHTTPMiddleware: that one finishes a streamed body cleanly even when the app
fails in the middle of it, so a client could not tell a cut stream from a whole one. Here the failure passes
through and the server aborts the transfer.
"""

from __future__ import annotations

import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxport.serve.errors import APIError
from voxport.serve.metrics import Metrics

OPEN_PATHS = ("/health",)  # probes need no key


class GuardAndCount:
    def __init__(self, app: ASGIApp, api_key: str | None, metrics: Metrics):
        self.app, self.api_key, self.metrics = app, api_key, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500  # 500 unless a response starts

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if (
                self.api_key
                and scope["path"] not in OPEN_PATHS
                and Headers(scope=scope).get("authorization") != f"Bearer {self.api_key}"
            ):
                await APIError(
                    401, "missing or wrong API key: send Authorization: Bearer <key>", code="invalid_api_key"
                ).response()(scope, receive, counted)
            else:
                await self.app(scope, receive, counted)
        finally:
            self._count(scope, status, time.perf_counter() - started)

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        """Labelled by the matched route's template (/v1/audio/voices/{voice_id}), so labels stay few."""
        endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.metrics.errors.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(seconds)
