"""One worker thread per model, fed by a bounded queue: the GPU does one job at a time, in arrival order,
and speech jobs that can share a batch (same settings) run together. A job whose client has gone is skipped
if it has not started, and stopped at the next step boundary if it has."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol


class ChunkSink(Protocol):
    """Where a streaming job puts its pieces as they are made, then None (streams.AsyncChunks)."""

    def put(self, item: Any) -> None: ...


class JobCancelled(Exception):
    """Every client of a running batch has gone: generation stops at this step boundary."""


@dataclass
class Job:
    payload: Any
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)  # the client went away
    chunks: ChunkSink | None = None  # streaming jobs only
    steps: int = 0  # generation steps (tokens or frames) done so far


def step_boundary(jobs: list[Job], steps: int) -> None:
    """Called by generation after each step (or chunk of steps): records progress, and stops the run
    when no job in it has a client left."""
    for job in jobs:
        job.steps = steps
    if all(job.cancelled.is_set() for job in jobs):
        raise JobCancelled()


@dataclass
class WorkerEvents:
    """What a worker reports, for metrics: batch sizes, cancelled jobs by stage, steps generated."""

    batch: Callable[[int], None] = lambda size: None
    cancelled: Callable[[str], None] = lambda stage: None  # "queued" (skipped) or "running" (stopped)
    steps: Callable[[int], None] = lambda count: None


class QueueFull(Exception):
    pass


class ModelWorker:
    def __init__(
        self,
        name: str,
        run: Callable[[list[Job]], None],
        max_queue: int,
        max_batch: int = 1,
        batch_key: Callable[[Job], Hashable | None] = lambda job: None,
    ):
        self.name, self._run, self.max_queue, self.max_batch, self._batch_key = (
            name,
            run,
            max_queue,
            max_batch,
            batch_key,
        )
        self._pending: deque[Job] = deque()
        self._condition = threading.Condition()
        self._running = 0
        self.events = WorkerEvents()
        threading.Thread(target=self._loop, name=f"voxport-{name}", daemon=True).start()

    def submit(self, job: Job) -> Job:
        with self._condition:
            if len(self._pending) >= self.max_queue:
                raise QueueFull(self.name)
            self._pending.append(job)
            self._condition.notify()
        return job

    def depth(self) -> int:
        """Jobs waiting plus jobs running."""
        return len(self._pending) + self._running

    def _next_batch(self) -> list[Job]:
        with self._condition:
            while not self._pending:
                self._condition.wait()
            first = self._pending.popleft()
            batch, key = [first], self._batch_key(first)
            if key is not None:
                for job in list(self._pending):
                    if len(batch) < self.max_batch and self._batch_key(job) == key:
                        batch.append(job)
                        self._pending.remove(job)
            self._running = len(batch)
        return batch

    def _loop(self) -> None:
        while True:
            batch = []
            for job in self._next_batch():
                if job.cancelled.is_set():
                    self.events.cancelled("queued")
                    job.future.set_exception(JobCancelled())
                else:
                    batch.append(job)
            try:
                if batch:
                    self.events.batch(len(batch))
                    self._run(batch)
            except Exception as error:
                for job in batch:
                    if isinstance(error, JobCancelled):
                        self.events.cancelled("running")
                    if not job.future.done():
                        job.future.set_exception(error)
                    if job.chunks is not None:
                        job.chunks.put(None)
            finally:
                self.events.steps(max((job.steps for job in batch), default=0))
                self._running = 0
