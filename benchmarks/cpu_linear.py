"""The CPU's linear kernel (`DeviceBackend.linear_kernel`: oneDNN's inner product in float32) next to F.linear
(the BLAS behind it), measured side by side in one run, alternating, so the machine's drift hits both alike.

Prints, for the projection shapes of CSM-1B and Covo-Audio-Chat's 7B LLM, the weight bytes per second each
reads at batch 1 (a decode step) and the seconds for a 22-token prompt, with the ratio; CSM's codebook heads
in the checkpoint's layout and in the engine's; with --model, a whole
CSM generation (prefill and --frames frames) on each kernel, with its ratio.

    python benchmarks/cpu_linear.py
    voxport make-tiny csm /tmp/csm-full --size full
    python benchmarks/cpu_linear.py --model /tmp/csm-full --frames 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from voxport.runtime.devices import backend_for

CPU = torch.device("cpu")
# (name, out, in) of the fused q/k/v, attention output, fused gate/up and down projections.
SHAPES = [
    ("csm depth qkv", 1536, 1024),
    ("csm depth gate_up", 16384, 1024),
    ("csm depth down", 1024, 8192),
    ("csm backbone qkv", 3072, 2048),
    ("csm backbone gate_up", 16384, 2048),
    ("csm backbone down", 2048, 8192),
    ("covo qkv", 4608, 3584),
    ("covo gate_up", 37888, 3584),
    ("covo down", 3584, 18944),
]
PROMPT_TOKENS = 22
WORKING_SET_BYTES = 768 * 2**20  # weights cycled through per timing: past the last-level cache


def median_seconds(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare_shapes(repeats: int) -> None:
    kernel = backend_for(CPU).linear_kernel(torch.float32)
    print(
        f"{'projection':22} {'F.linear GB/s':>14} {'kernel GB/s':>12} {'ratio':>6} | "
        f"{'prompt F.linear ms':>18} {'kernel ms':>10} {'ratio':>6}"
    )
    for name, rows, columns in SHAPES:
        copies = max(1, WORKING_SET_BYTES // (rows * columns * 4))
        weights = [torch.randn(rows, columns) / columns**0.5 for _ in range(copies)]
        step, prompt = torch.randn(1, 1, columns), torch.randn(1, PROMPT_TOKENS, columns)

        def over_all(linear, x):
            return lambda: [linear(x, weight) for weight in weights]

        timings = {}
        for _ in range(2):  # alternate the kernels twice: drift hits both
            for label, linear in (("blas", F.linear), ("kernel", kernel)):
                for shape, x in (("step", step), ("prompt", prompt)):
                    seconds = median_seconds(over_all(linear, x), repeats) / copies
                    timings.setdefault((label, shape), []).append(seconds)
        best = {key: min(values) for key, values in timings.items()}
        weight_bytes = rows * columns * 4
        print(
            f"{name:22} {weight_bytes / best['blas', 'step'] / 1e9:14.1f} "
            f"{weight_bytes / best['kernel', 'step'] / 1e9:12.1f} "
            f"{best['blas', 'step'] / best['kernel', 'step']:6.2f} | {best['blas', 'prompt'] * 1e3:18.2f} "
            f"{best['kernel', 'prompt'] * 1e3:10.2f} {best['blas', 'prompt'] / best['kernel', 'prompt']:6.2f}"
        )


def compare_head_layouts(repeats: int) -> None:
    """CSM's codebook heads as checkpoints store them ([hidden, vocab], read through a transposed view) and as
    the engine stores them at load (`arrange_weights`: [vocab, hidden] rows, cut to the codec's 2048 ids)."""
    kernel = backend_for(CPU).linear_kernel(torch.float32)
    heads = torch.randn(31, 1024, 2051) / 1024**0.5  # CSM-1B's 31 depth heads: 260 MB, past the cache
    layouts = {
        "checkpoint view": [head.transpose(0, 1) for head in heads.unbind(0)],
        "engine rows": [head.t().contiguous()[:2048] for head in heads.unbind(0)],
    }
    x = torch.randn(1, 1, 1024)
    timings = {name: [] for name in layouts}
    for _ in range(2):
        for name, weights in layouts.items():
            timings[name].append(median_seconds(lambda: [kernel(x, weight) for weight in weights], repeats) / 31)
    view, rows = min(timings["checkpoint view"]), min(timings["engine rows"])
    print(
        f"CSM codebook head at batch 1: checkpoint's layout {view * 1e6:.0f} us, engine's rows {rows * 1e6:.0f} us, "
        f"ratio {view / rows:.2f}"
    )


def compare_generation(model: str, frames: int, repeats: int) -> None:
    from voxport.models.csm import CsmSpeech, SynthesisRequest

    tts = CsmSpeech.load(model, CPU, torch.float32)
    engine, _ = tts.engine(1)
    kernel = engine.linear
    request = SynthesisRequest(text="Hello from a full-size model.", max_frames=frames, min_frames=frames, seed=0)
    seconds = {"F.linear": [], "kernel": []}
    tts.generate(request)  # warm-up
    for _ in range(repeats):
        for label, linear in (("F.linear", F.linear), ("kernel", kernel)):
            engine.linear = engine.backbone.linear = engine.depth.linear = linear
            seconds[label].append(tts.generate(request).timings["generation_seconds"])
    blas, fast = statistics.median(seconds["F.linear"]), statistics.median(seconds["kernel"])
    print(
        f"CSM generation, prompt + {frames} frames, float32, medians of {repeats}: F.linear {blas:.2f} s, "
        f"kernel {fast:.2f} s, ratio {blas / fast:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a full-size CSM checkpoint (voxport make-tiny csm DIR --size full)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    compare_shapes(args.repeats)
    compare_head_layouts(args.repeats)
    if args.model:
        compare_generation(args.model, args.frames, args.repeats)


if __name__ == "__main__":
    main()
