"""voxport's CSM engine next to transformers' generate(), same checkpoint, frames and device, in one run.

Prints frames per second, real-time factor (generation seconds / audio seconds) and their ratio, the share
of the memory-bandwidth bound the engine reaches at batch 1, time to first audio (streaming), peak memory,
and batch throughput for each --batches size side by side with batch 1. Targets (issue 6): CPU tiny
checkpoint >= 4x transformers' frames/s at batch 1; full-size on an H200: RTF <= 0.08 at batch 1, first
audio <= 200 ms, batch 8 >= 50x real time, peak memory < 4 GB at batch 1 in bfloat16.

    python benchmarks/csm_engine.py                          # tiny random checkpoint on the CPU
    voxport make-tiny csm /tmp/csm-full --size full          # CSM-1B's dimensions, random weights
    python benchmarks/csm_engine.py --model /tmp/csm-full --device cuda --dtype bfloat16 --compile --batches 1,4,8
    python benchmarks/csm_engine.py --model /tmp/csm-full --dtype float32 --frames 4 --repeats 1 \
        --skip-transformers --batches 1,4                      # the same on a small CPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from voxport.models.csm import CsmSpeech, SynthesisRequest
from voxport.models.tiny import make_tiny_csm
from voxport.runtime.bandwidth import memory_bandwidth
from voxport.runtime.devices import backend_for, resolve_device, resolve_dtype
from voxport.validate.performance import bound_fraction

TEXT = "The quick brown fox jumps over the lazy dog while the band plays on."


def measure(run, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median generation seconds (prefill and frames, as the result's timings say) and median total seconds."""
    backend = backend_for(device)
    generation, total = [], []
    for _ in range(repeats):
        backend.synchronize(device)
        start = time.perf_counter()
        results = run()
        backend.synchronize(device)
        total.append(time.perf_counter() - start)
        generation.append((results if isinstance(results, list) else [results])[0].timings["generation_seconds"])
    return statistics.median(generation), statistics.median(total)


def report(name: str, frames: int, audio_seconds: float, generation: float, total: float) -> None:
    print(
        f"{name:13s} {frames / generation:8.1f} frames/s (generation {generation:.3f} s)  "
        f"RTF {total / audio_seconds:.4f} (prompt + generation + decode {total:.3f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1", help="batch sizes to time side by side, e.g. 1,4,8")
    parser.add_argument(
        "--model",
        type=Path,
        help="checkpoint directory (default: a tiny random one); "
        "`voxport make-tiny csm DIR --size full` writes CSM-1B's size",
    )
    parser.add_argument("--compile", action="store_true", help="compile voxport's frame step where supported")
    parser.add_argument("--greedy", action="store_true", help="greedy codes instead of sampling (T 0.9, top-k 50)")
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    batches = [int(size) for size in args.batches.split(",")]
    checkpoint = args.model or make_tiny_csm(Path(tempfile.mkdtemp(prefix="voxport-csm-bench-")))
    tts = CsmSpeech.load(checkpoint, device, dtype)
    if args.compile:
        tts.compile()
    backend = backend_for(device)
    request = SynthesisRequest(text=TEXT, max_frames=args.frames, min_frames=args.frames, seed=0, greedy=args.greedy)
    audio_seconds = args.frames * 0.08
    step_bytes = tts.weight_bytes_per_step()
    print(
        f"CSM {checkpoint} ({step_bytes / 1e9:.2f} GB read per frame) on {device} ({backend.device_name(device)}), "
        f"{str(dtype).removeprefix('torch.')}, {args.frames} frames ({audio_seconds:.2f} s of audio), "
        f"{'greedy' if args.greedy else 'sampling'}"
    )

    tts.generate(request)  # warm-up (and compilation)
    bandwidth = memory_bandwidth(device, remeasure=True).bytes_per_second  # probed right before the timed runs
    ours = measure(lambda: tts.generate(request), args.repeats, device)
    report("voxport", args.frames, audio_seconds, *ours)
    run_bytes = args.frames * step_bytes + tts.weight_bytes_per_prompt()  # the prompt's prefill reads the backbone
    print(
        f"bandwidth {bandwidth / 1e9:.1f} GB/s: generation (prefill and frames) ran at "
        f"{bound_fraction(1, ours[0], run_bytes, bandwidth):.2f} of the memory-bandwidth bound"
    )
    if not args.skip_transformers:
        # transformers cannot forbid an early end; with random weights no end-of-audio frame is drawn, so
        # both engines make the same number of frames (checked).
        tts.generate_with_transformers(request)
        theirs = measure(lambda: tts.generate_with_transformers(request), args.repeats, device)
        assert tts.generate_with_transformers(request).frames == args.frames, "transformers ended early"
        report("transformers", args.frames, audio_seconds, *theirs)
        print(
            f"voxport / transformers frames/s: {theirs[0] / ours[0]:.2f}x; whole job: {theirs[1] / ours[1]:.2f}x "
            f"(target on CPU, tiny, batch 1: >= 4x frames/s)"
        )

    first = []
    for _ in range(args.repeats):
        chunks = tts.stream(request)
        first.append(next(chunks).seconds_since_start)
        for _ in chunks:
            pass
    print(f"time to first audio (streaming, 2-frame first chunk): {statistics.median(first) * 1000:.0f} ms")

    backend.reset_peak_memory(device)
    tts.generate(request)
    peak = backend.peak_memory(device)
    print(f"peak memory at batch 1: {peak.allocated_bytes / 2**30:.2f} GiB allocated ({peak.source})")
    single = None
    for size in batches:
        requests = [request] * size
        tts.generate_batch(requests)  # warm-up at this batch size
        generation, total = measure(lambda: tts.generate_batch(requests), args.repeats, device)
        rate = size * args.frames / generation
        single = single or (rate if size == 1 else None)
        versus = f" = {rate / single:.2f}x batch 1" if single and size > 1 else ""
        print(
            f"batch {size}: {rate:.3g} frames/s{versus}, {size * audio_seconds / total:.3g}x real time "
            f"(whole job {total:.3f} s)"
        )


if __name__ == "__main__":
    main()
