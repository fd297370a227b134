"""voxport batch tts at 1 and at 2 workers, same rows, same tiny checkpoint, in one run on one Ray runtime.

Prints, per worker count, rows per second over the whole job (Ray Data's actor start and model loading
included) and from the first finished row to the last (the workers' steady rate), and the ratio 2 / 1.
Each worker gets one CPU (--device cpu), so on a machine with at least 2 free cores the steady rate should
nearly double.

    python benchmarks/batch_workers.py [--rows 32] [--frames 8] [--batch-size 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import ray

from voxport.batch.cluster import start
from voxport.batch.jobs import BatchJob, run_batch
from voxport.models.tiny import make_tiny_csm, write_tiny_checkpoint


def measure(job: BatchJob) -> tuple[float, float]:
    """(rows/s over the whole job, rows/s from the first finished row to the last)."""
    finished: list[float] = []
    began = time.perf_counter()
    summary = run_batch(job, on_record=lambda record: finished.append(time.perf_counter()))
    total = time.perf_counter() - began
    assert summary.failed == 0 and summary.ok == len(finished)
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) if finished[-1] > finished[0] else float("nan")
    return summary.ok / total, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8, help="80 ms frames a row (default: 8)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="runs per worker count, alternated (default: 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = write_tiny_checkpoint(make_tiny_csm, scratch / "tiny-csm", seed=0)
        rows = scratch / "rows.jsonl"
        rows.write_text(
            "".join(
                json.dumps({"text": f"Line number {n} of the benchmark.", "seed": n}) + "\n" for n in range(args.rows)
            )
        )
        start(cpus=2)
        results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        try:
            for repeat in range(args.repeats):
                for workers in (1, 2):
                    job = BatchJob(
                        kind="tts",
                        input=rows,
                        model=str(model),
                        device="cpu",
                        workers=workers,
                        output_dir=scratch / f"out-{workers}-{repeat}",
                        batch_size=args.batch_size,
                        row_defaults={"speaker": 0, "max_tokens": args.frames, "seed": 0},
                        options={"temperature": 0.9, "top_k": 50, "greedy": False},
                    )
                    results[workers].append(measure(job))
        finally:
            ray.shutdown()
    for workers, runs in results.items():
        total = statistics.median(run[0] for run in runs)
        steady = statistics.median(run[1] for run in runs)
        print(
            f"{workers} worker{'s' * (workers > 1)}: {args.rows} rows of {args.frames} frames: "
            f"{total:.2f} rows/s whole job, {steady:.2f} rows/s steady (median of {len(runs)})"
        )
    ratio = [
        statistics.median(run[index] for run in results[2]) / statistics.median(run[index] for run in results[1])
        for index in (0, 1)
    ]
    print(f"2 workers / 1 worker: {ratio[0]:.2f}x whole job, {ratio[1]:.2f}x steady")


if __name__ == "__main__":
    main()
