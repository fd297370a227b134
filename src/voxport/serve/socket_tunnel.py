"""WebSockets through replicas: a socket that reaches the entry is served, for its whole life, by one replica's app.

Ray Serve's handle calls stream replies but take their arguments once, so the two directions travel apart. What
the replica's app sends (accept, messages, close, or a refused handshake) comes back as the items of one
streaming call, `ModelReplica.converse`; what the client sends waits in a `SocketInbox` actor under the
socket's session id, taken by the replica's app as it reads. The entry relays ASGI messages unchanged, so the
key check, the handshake's answers, the events, the close codes and the cancellation of a client that leaves
are the replica's app's own, as in the single-process server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs

DISCONNECT = {"type": "websocket.disconnect", "code": 1006}  # what a socket whose entry side is gone reads
REPLICA_FAILED = {"type": "websocket.close", "code": 1011, "reason": "the model's replica failed; reconnect"}


class SocketInbox:
    """A Ray actor: each open socket's messages from its client, in order, until its replica takes them."""

    def __init__(self):
        self.queues: dict[str, asyncio.Queue] = {}

    async def open(self, session: str) -> None:
        self.queues[session] = asyncio.Queue()

    async def put(self, session: str, message: dict) -> None:
        if (queue := self.queues.get(session)) is not None:
            queue.put_nowait(message)

    async def take(self, session: str) -> dict:
        """The session's next message; a closed (or unknown) session reads a disconnect, never waits."""
        queue = self.queues.get(session)
        return DISCONNECT if queue is None else await queue.get()

    async def close(self, session: str) -> None:
        if (queue := self.queues.pop(session, None)) is not None:
            queue.put_nowait(DISCONNECT)  # wakes a replica still waiting


async def converse(app: Any, scope: dict, inbox: Any, session: str) -> AsyncIterator[dict]:
    """Runs one socket through `app` (replica side): yields each ASGI message the app sends; the app reads the
    client's from the inbox. Stopped early (the entry cancelled the call), the app reads a disconnect and ends
    as it does when a client leaves."""
    sent: asyncio.Queue = asyncio.Queue()
    gone = asyncio.Event()
    gone_wait = asyncio.ensure_future(gone.wait())
    taking: asyncio.Future | None = None

    async def receive() -> dict:
        # A read the app abandons (a timeout around it) leaves its take running for the next read: no message
        # the client sent is lost.
        nonlocal taking
        if taking is None:
            taking = asyncio.wrap_future(inbox.take.remote(session).future())
        await asyncio.wait({taking, gone_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not taking.done():
            return DISCONNECT
        message, taking = taking.result(), None
        return message

    async def send(message: dict) -> None:
        if gone.is_set():  # as a server's send to a closed socket fails: the app stops what it was sending
            raise ConnectionResetError("the client left")
        sent.put_nowait(message)

    task = asyncio.ensure_future(app(scope, receive, send))
    task.add_done_callback(lambda _: sent.put_nowait(None))
    try:
        while (message := await sent.get()) is not None:
            yield message
        task.result()
    finally:
        gone.set()


def socket_scope(scope: dict) -> dict:
    """What of the entry's socket scope a replica's app needs (it matches the route itself)."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": scope.get("http_version", "1.1"),
        "scheme": scope.get("scheme", "ws"),
        "path": scope["path"],
        "raw_path": scope["path"].encode(),
        "query_string": scope.get("query_string", b""),
        "root_path": "",
        "headers": list(scope["headers"]),
        "subprotocols": list(scope.get("subprotocols", [])),
        "client": None,
        "server": None,
        "extensions": {"websocket.http.response": {}},  # a refused handshake answers with an HTTP error body
    }


class Tunnel:
    """The entry's end of one socket route (an ASGI endpoint): picks the model's replicas by the route's model
    parameter and relays the socket to one of them."""

    def __init__(self, model_param: str, pick: Callable[[str | None], Any], inbox: Any):
        self.model_param, self.pick, self.inbox = model_param, pick, inbox

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        named = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(self.model_param, [None])[0]
        session = uuid.uuid4().hex
        await self.inbox.open.remote(session)
        replies = self.pick(named).handle.converse.remote(socket_scope(scope), session)
        forwarding = asyncio.ensure_future(self._forward(receive, session))
        try:
            async for message in replies:
                await send(message)
        except Exception:  # the replica died, or the client is gone and the send failed
            with suppress(Exception):  # a client that is gone has nobody left to tell
                await send(REPLICA_FAILED)
        finally:
            forwarding.cancel()
            replies.cancel()
            await self.inbox.close.remote(session)

    async def _forward(self, receive: Callable, session: str) -> None:
        """The client's messages into the inbox, in order, up to its disconnect."""
        while True:
            message = await receive()
            await self.inbox.put.remote(session, message)
            if message["type"] == "websocket.disconnect":
                return
