"""Performance: fixed-length generation per configuration, with every timer read after a device sync, and a
memory-bandwidth roofline (weight bytes per step / bandwidth) to say how far from the bound it runs."""

from __future__ import annotations

import time

import numpy as np
import torch

from voxport.errors import InputError
from voxport.models.registry import load_model
from voxport.runtime.devices import BACKENDS, backend_for, dtype_name

# Peak memory bandwidth in bytes/s, matched (first hit) against the lower-cased device name.
BANDWIDTH = [
    ("h200", 4.8e12), ("h100 nvl", 3.9e12), ("h100 sxm", 3.35e12), ("h100 80gb hbm3", 3.35e12), ("h100", 2.0e12),
    ("h800", 3.35e12), ("h20", 4.0e12), ("a100-sxm4-80gb", 2.039e12), ("a100 80gb", 1.935e12), ("a100", 1.555e12),
    ("a800", 2.039e12), ("l40s", 0.864e12), ("l40", 0.864e12), ("l4", 0.3e12), ("a10", 0.6e12),
    ("rtx 5090", 1.792e12), ("rtx 4090", 1.008e12), ("rtx 3090", 0.936e12), ("v100", 0.9e12), ("t4", 0.32e12),
    ("910b", 1.6e12), ("910", 1.2e12), ("310p", 0.2e12),
]


def known_bandwidth(device_name: str) -> float | None:
    lowered = device_name.lower()
    return next((value for key, value in BANDWIDTH if key in lowered), None)


def run_benchmark(source: str, device: torch.device, dtype: torch.dtype, configs: list[tuple[str, str, int]],
                  iterations: int = 3, bandwidth: float | None = None, progress=print) -> dict:
    if iterations < 1:
        raise InputError(f"iterations is {iterations}: expected a positive number")
    backend, host = backend_for(device), BACKENDS["cpu"]
    start = time.perf_counter()
    model = load_model(source, device, dtype)
    backend.synchronize(device)
    total_load = time.perf_counter() - start
    name = backend.device_name(device)
    bandwidth = bandwidth or known_bandwidth(name)
    step_bytes = model.weight_bytes_per_step()
    results = []
    for config, size, steps in configs:
        progress(f"bench: {config} ({steps} {model.step_unit}s, {iterations} iterations)")
        inputs = model.bench_inputs(size)
        model.run_fixed(inputs, min(steps, 4))  # warm-up: kernels chosen, caches allocated
        backend.reset_peak_memory(device)
        host.reset_peak_memory(device)
        latencies, audio_seconds = [], None
        for _ in range(iterations):
            backend.synchronize(device)
            began = time.perf_counter()
            audio_seconds = model.run_fixed(inputs, steps)
            backend.synchronize(device)
            latencies.append(time.perf_counter() - began)
        results.append(_config_result(config, steps, latencies, audio_seconds, backend.peak_memory(device),
                                      host.peak_memory(device), step_bytes, bandwidth, device))
    return {
        "model": str(source), "device": str(device), "device_name": name, "dtype": dtype_name(dtype),
        "step_unit": model.step_unit, "iterations": iterations,
        "init_seconds": getattr(model, "init_seconds", None), "load_seconds": model.load_seconds,
        "total_load_seconds": total_load, "weight_bytes_per_step": step_bytes, "bandwidth_bytes_per_second": bandwidth,
        "configs": results,
    }


def _config_result(config, steps, latencies, audio_seconds, device_peak, host_peak, step_bytes, bandwidth, device):
    mean = float(np.mean(latencies))
    bound = step_bytes / bandwidth if bandwidth else None
    on_device = device.type != "cpu"
    return {
        "config": config, "steps": steps,
        "latency_mean_seconds": mean,
        "latency_p50_seconds": float(np.percentile(latencies, 50)),
        "latency_p90_seconds": float(np.percentile(latencies, 90)),
        "steps_per_second": steps / mean,
        "audio_seconds": audio_seconds,
        "rtf": mean / audio_seconds if audio_seconds else None,
        "real_time_multiple": audio_seconds / mean if audio_seconds else None,
        "peak_allocated_bytes": device_peak.allocated_bytes if on_device else None,
        "peak_reserved_bytes": device_peak.reserved_bytes if on_device else None,
        "peak_process_rss_bytes": host_peak.allocated_bytes,
        "bound_step_seconds": bound,
        "measured_over_bound": (mean / steps) / bound if bound else None,
    }
