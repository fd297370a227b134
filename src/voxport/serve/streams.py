"""Pieces of a streaming job, from the worker thread to the response: how they travel, and what the response
does when the client leaves (the job is cancelled) or the job fails half-way (the caller decides how the
client is told: an error event, or an aborted transfer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from voxport.serve.workers import Job


class StreamFailed(Exception):
    """A streaming job failed after its response had started; the client must be able to tell."""


class AsyncChunks:
    """A job's pieces: `put` from the worker thread, read in the event loop without holding a thread."""

    def __init__(self):
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()

    def put(self, item: Any) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def get(self) -> Any:
        return await self._queue.get()


async def job_pieces(job: Job) -> AsyncIterator[Any]:
    """The pieces as they are made, until the job ends; StreamFailed if it ended in an error. A consumer that
    stops early (the client went away) cancels the job: it stops at its next step boundary."""
    try:
        while (piece := await job.chunks.get()) is not None:
            yield piece
        try:
            await asyncio.wrap_future(job.future)
        except Exception as error:
            raise StreamFailed(f"{type(error).__name__}: {error}") from error
    finally:
        job.cancelled.set()
