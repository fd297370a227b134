"""Timers that count the work queued on an accelerator, not just the host's part of it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from voxport.runtime.devices import backend_for


@contextmanager
def timed(device: torch.device, into: dict[str, float], name: str) -> Iterator[None]:
    """Store the wall seconds of the block as `into[name]`, synchronizing `device` at both ends."""
    backend = backend_for(device)
    backend.synchronize(device)
    start = time.perf_counter()
    yield
    backend.synchronize(device)
    into[name] = time.perf_counter() - start
