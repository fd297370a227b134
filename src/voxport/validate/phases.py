"""Seconds and peak process memory of each phase of a check (the reference, the benchmark, the target...), so a
report says where the time and the memory went, and a progress bar over the blocks a phase replays."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch

from voxport.runtime.devices import backend_for

HOST = torch.device("cpu")


@contextmanager
def phase(name: str, into: dict[str, dict]) -> Iterator[None]:
    """`into[name]` = the phase's wall seconds and the process's peak resident set during it (its high-water mark
    reset at the start, where the OS allows; else the peak since the process started)."""
    host = backend_for(HOST)
    host.reset_peak_memory(HOST)
    start = time.perf_counter()
    try:
        yield
    finally:
        into[name] = {"seconds": time.perf_counter() - start, "peak_rss_bytes": host.peak_memory(HOST).allocated_bytes}


def no_bar(total: int, unit: str, description: str):
    """The progress bar of a run nobody watches: a context that yields an update(done) that does nothing."""
    return nullcontext(lambda done: None)


BarFactory = Callable[[int, str, str], object]  # (total, unit, description) -> context yielding update(done)
