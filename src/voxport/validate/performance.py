"""Performance: fixed-length generation per configuration, every timer read after a device sync, held against
the memory-bandwidth bound (weight bytes read per step / bandwidth), with a load-time breakdown that adds up.

Per-step time comes from the difference between the N-step run and a 1-step run of the same input, so the
fixed costs (prompt, encoder, prefill, audio decode set-up) cancel and what is left is what the bound is about.
bound_fraction = bound seconds / measured seconds: 1.0 reads weights as fast as the device's memory allows.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from voxport.errors import InputError
from voxport.models.registry import family_of
from voxport.runtime.bandwidth import faster_of_another_probe, memory_bandwidth
from voxport.runtime.devices import BACKENDS, backend_for, dtype_name


def bound_fraction(steps: int, seconds: float, step_bytes: int, bandwidth: float) -> float | None:
    """Bound seconds over measured seconds for `steps` steps that each read `step_bytes`."""
    return steps * step_bytes / bandwidth / seconds if seconds > 0 and bandwidth else None


def run_benchmark(
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    configs: list[tuple[str, str, int]],
    iterations: int = 3,
    bandwidth: float | None = None,
    progress=print,
    remeasure_bandwidth: bool = False,
    stages: bool = False,
) -> dict:
    """`bandwidth` in bytes/s overrides the published figure or the cached probe; `stages` also times each
    stage of the model's whole job (where the model declares them)."""
    if iterations < 1:
        raise InputError(f"iterations is {iterations}: expected a positive number")
    backend, host = backend_for(device), BACKENDS["cpu"]
    model, load = _load(source, device, dtype)
    name = backend.device_name(device)
    progress(f"bench: memory bandwidth of {name}")
    measured_bandwidth = memory_bandwidth(device, bandwidth, remeasure_bandwidth)
    step_bytes = model.weight_bytes_per_step()
    stage_report = None
    if stages and hasattr(model, "stage_timings"):
        progress("bench: timing each stage of the whole job")
        stage_report = model.stage_timings(model.bench_inputs(configs[0][1]))
        load |= {key: value for key, value in model.load_timings.items() if key not in load}  # loaded on demand
    timed_configs, warm = [], {"short"}  # the first call ran a short input
    for config, size, steps in configs:
        progress(f"bench: {config} ({steps} {model.step_unit}s, {iterations} iterations)")
        inputs = model.bench_inputs(size)
        if size not in warm:
            model.run_fixed(inputs, min(steps, 4))  # warm-up: kernels chosen, caches allocated for this length
            warm.add(size)
        backend.reset_peak_memory(device)
        host.reset_peak_memory(device)
        latencies, singles, audio_seconds = [], [], None
        for _ in range(iterations):
            audio_seconds, seconds = _timed_run(model, inputs, steps, backend, device)
            latencies.append(seconds)
            if steps > 1:
                singles.append(_timed_run(model, inputs, 1, backend, device)[1])
        timed_configs.append(
            (config, steps, latencies, singles, audio_seconds, backend.peak_memory(device), host.peak_memory(device))
        )
    measured_bandwidth = faster_of_another_probe(device, measured_bandwidth)
    rate = measured_bandwidth.bytes_per_second
    results = [_config_result(*timed, step_bytes, rate, device) for timed in timed_configs]
    decode = (stage_report or {}).get(f"decode_seconds_per_{model.step_unit}")
    if decode:
        stage_report["decode_bound_fraction"] = bound_fraction(1, decode, step_bytes, rate)
    return {
        "model": str(source),
        "device": str(device),
        "device_name": name,
        "dtype": dtype_name(dtype),
        "step_unit": model.step_unit,
        "iterations": iterations,
        "load_breakdown_seconds": load,
        "total_load_seconds": sum(load.values()),
        "weight_bytes_per_step": step_bytes,
        "bandwidth_bytes_per_second": measured_bandwidth.bytes_per_second,
        "bandwidth_source": measured_bandwidth.source,
        "bandwidth_probes_bytes_per_second": list(measured_bandwidth.probes),
        "stages": stage_report,
        "configs": results,
    }


def _load(source, device: torch.device, dtype: torch.dtype):
    """The model and where its start-up time went: importing its code, each load phase the model times,
    the rest of load() (named "other"), and the first call (one step: kernel choice, allocation)."""
    backend = backend_for(device)
    start = time.perf_counter()
    model_class = family_of(source).model  # imports the family's code (transformers' model modules)
    imported = time.perf_counter()
    model = model_class.load(source, device, dtype)
    backend.synchronize(device)
    loaded = time.perf_counter()
    phases = dict(model.load_timings)
    breakdown = {"import": imported - start, **phases, "other": max(0.0, loaded - imported - sum(phases.values()))}
    breakdown["first_call"] = _timed_run(model, model.bench_inputs("short"), 1, backend, device)[1]
    return model, breakdown


def _timed_run(model, inputs, steps: int, backend, device: torch.device) -> tuple[float | None, float]:
    backend.synchronize(device)
    began = time.perf_counter()
    audio_seconds = model.run_fixed(inputs, steps)
    backend.synchronize(device)
    return audio_seconds, time.perf_counter() - began


def _config_result(
    config, steps, latencies, singles, audio_seconds, device_peak, host_peak, step_bytes, bandwidth, device
):
    mean = float(np.mean(latencies))
    bound = step_bytes / bandwidth if bandwidth else None
    on_device = device.type != "cpu"
    # Per step: (N-step run - 1-step run) / (N - 1), medians; a 1-step config has only the whole run.
    # None where noise swamps the difference (a tiny model on a busy machine).
    step = (
        (statistics.median(latencies) - statistics.median(singles)) / (steps - 1)
        if singles
        else statistics.median(latencies)
    )
    step = step if step > 0 else None
    return {
        "config": config,
        "steps": steps,
        "latency_mean_seconds": mean,
        "latency_p50_seconds": float(np.percentile(latencies, 50)),
        "latency_p90_seconds": float(np.percentile(latencies, 90)),
        "steps_per_second": steps / mean,
        "step_seconds": step,
        "audio_seconds": audio_seconds,
        "rtf": mean / audio_seconds if audio_seconds else None,
        "real_time_multiple": audio_seconds / mean if audio_seconds else None,
        "peak_allocated_bytes": device_peak.allocated_bytes if on_device else None,
        "peak_reserved_bytes": device_peak.reserved_bytes if on_device else None,
        "peak_process_rss_bytes": host_peak.allocated_bytes,
        "bytes_read_per_step": step_bytes,
        "bound_step_seconds": bound,
        "bound_fraction": bound_fraction(1, step, step_bytes, bandwidth) if step else None,
    }
