"""Memory bandwidth of a device: the figure that turns bytes read per step into a time bound.

A generation step at batch 1 reads every weight once, so bytes / bandwidth is the fastest it can run. Known
accelerators have a published peak; anything else (every CPU, a GPU missing from the table) gets a short
probe: matrix-vector products over a matrix far larger than any cache, the same access pattern as a decode
step, by torch.mv and by the engines' own linear kernel on a tall and a wide matrix (the fastest counts),
timed after a device sync.
Probes are cached per machine and device in the user's cache directory (VOXPORT_CACHE_DIR overrides it).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from platformdirs import user_cache_dir

from voxport.runtime.devices import backend_for
from voxport.runtime.files import replaced_atomically

# Peak memory bandwidth in bytes/s, matched (first hit) against the lower-cased device name.
PUBLISHED = [
    ("h200", 4.8e12),
    ("h100 nvl", 3.9e12),
    ("h100 sxm", 3.35e12),
    ("h100 80gb hbm3", 3.35e12),
    ("h100", 2.0e12),
    ("h800", 3.35e12),
    ("h20", 4.0e12),
    ("a100-sxm4-80gb", 2.039e12),
    ("a100 80gb", 1.935e12),
    ("a100", 1.555e12),
    ("a800", 2.039e12),
    ("l40s", 0.864e12),
    ("l40", 0.864e12),
    ("l4", 0.3e12),
    ("a10", 0.6e12),
    ("rtx 5090", 1.792e12),
    ("rtx 4090", 1.008e12),
    ("rtx 3090", 0.936e12),
    ("v100", 0.9e12),
    ("t4", 0.32e12),
    ("910b", 1.6e12),
    ("910", 1.2e12),
    ("310p", 0.2e12),
]
CACHE_FILE = "bandwidth.json"
PROBE_BYTES = 256 * 2**20  # a float32 matrix this big: far past the last-level cache of any CPU
PROBE_PRODUCTS = 4  # matrix-vector products per timed sample
PROBE_SAMPLES = 5
PROBE_COLUMNS = (1024, 16384)  # a tall and a wide matrix: kernels read some shapes faster than others
# Part of the cache key, so that figures an older probe cached are not reused.
PROBE_METHOD = "float32 mv or the linear kernel, tall or wide: the fastest"


@dataclass(frozen=True)
class Bandwidth:
    bytes_per_second: float
    source: str  # "given" (--bandwidth-gbs), "published" (the table), "probe" or "cached probe"
    probes: tuple[float, ...] = ()  # the figures it was picked from (before and after a run): their spread is the drift


def published_bandwidth(device_name: str) -> float | None:
    lowered = device_name.lower()
    return next((value for key, value in PUBLISHED if key in lowered), None)


def memory_bandwidth(
    device: torch.device, given: float | None = None, remeasure: bool = False, fresh: bool = False
) -> Bandwidth:
    """`given` bytes/s if set; else the published figure (unless `remeasure`); else a probe, cached unless
    `remeasure` or `fresh`. `fresh` is for a figure set beside one run: a shared machine's bandwidth drifts
    by tens of percent with its neighbours' load, so a probe from another minute can misjudge the run."""
    if given:
        return Bandwidth(given, "given")
    name = backend_for(device).device_name(device)
    published = published_bandwidth(name)
    if published and not remeasure:
        return Bandwidth(published, "published")
    key = f"{platform.node()} | {device} | {name} | {PROBE_METHOD}"
    cache = _read_cache()
    if key in cache and not (remeasure or fresh):
        return Bandwidth(float(cache[key]), "cached probe")
    measured = probe_bandwidth(device)
    _write_cache(cache | {key: measured})
    return Bandwidth(measured, "probe")


def faster_of_another_probe(device: torch.device, before: Bandwidth) -> Bandwidth:
    """A probed bandwidth probed again (after the timed runs), the faster figure kept: a shared machine's
    bandwidth drifts between probes, and a bound probed at a slow moment could be beaten by a run at a fast
    one. Given and published figures stand as they are."""
    if before.source not in ("probe", "cached probe"):
        return before
    after = memory_bandwidth(device, fresh=True)
    faster = after if after.bytes_per_second > before.bytes_per_second else before
    return replace(faster, probes=(before.bytes_per_second, after.bytes_per_second))


def probes_text(rates: list[float]) -> str:
    """Probed figures (bytes/s) for a summary line: '30.9 and 39.5 GB/s'."""
    return " and ".join(f"{rate / 1e9:.1f}" for rate in rates) + " GB/s"


def probe_bandwidth(device: torch.device, size_bytes: int = PROBE_BYTES) -> float:
    """Bytes/s at which float32 matrix-vector products read their matrix on `device`: the median of samples, by
    the fastest of torch.mv and the linear kernel the engines call (`DeviceBackend.linear_kernel`) over a tall
    and a wide matrix, so that no kernel or weight shape the engines use can beat the bound."""
    backend = backend_for(device)
    linear = backend.linear_kernel(torch.float32)
    rates = []
    for columns in PROBE_COLUMNS:
        matrix = torch.ones(size_bytes // (4 * columns), columns, device=device)
        vector = torch.ones(columns, device=device)
        for product in (lambda: torch.mv(matrix, vector), lambda: linear(vector.view(1, columns), matrix)):
            rates.append(_median_rate(product, matrix.numel() * 4, backend, device))
    return max(rates)


def _median_rate(product, matrix_bytes: int, backend, device: torch.device) -> float:
    product()  # first call: kernels chosen, pages touched
    rates = []
    for _ in range(PROBE_SAMPLES):
        backend.synchronize(device)
        start = time.perf_counter()
        for _ in range(PROBE_PRODUCTS):
            product()
        backend.synchronize(device)
        rates.append(PROBE_PRODUCTS * matrix_bytes / (time.perf_counter() - start))
    return statistics.median(rates)


def cache_path() -> Path:
    """VOXPORT_CACHE_DIR if set (tests point it at a temporary directory), else the user's cache directory."""
    return Path(os.environ.get("VOXPORT_CACHE_DIR") or user_cache_dir("voxport")) / CACHE_FILE


def _read_cache() -> dict:
    try:
        cached = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _write_cache(entries: dict) -> None:
    """Best effort: a read-only home only means the next run probes again."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as temporary:
            temporary.write_text(json.dumps(entries, indent=2))
    except OSError:
        pass
