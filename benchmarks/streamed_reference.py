"""accuracy's CPU float32 reference with its weights streamed from the checkpoint, next to the whole-model one.

Writes a full-size random Covo checkpoint (`voxport make-tiny covo DIR --size full --layers N`: the real widths,
vocabulary, encoder and token2wav, N LLM layers) unless --dir already holds one, then records the reference
(every stage and block call of the examples, and the teacher-forced outputs: `validate.accuracy.record_reference`)
twice, each in a subprocess of its own so that each peak resident set is its own: with the whole model in
memory, and streamed (blocks read as they run, `--max-memory` bounding the process if given). Prints seconds
and peak RSS side by side and their ratios. Target: streamed within 1.3x of the whole model's time.

    python benchmarks/streamed_reference.py [--llm-layers 2] [--dir DIR] [--examples english] [--max-memory GB]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.3


def measure(directory: Path, streamed: bool, examples: list[str], max_memory: float | None) -> dict:
    """One reference recording in this process: its seconds and the process's peak RSS."""
    import torch

    from voxport.runtime.devices import backend_for
    from voxport.runtime.streaming import GB, Streaming
    from voxport.validate.accuracy import record_reference

    host = torch.device("cpu")
    streaming = Streaming(None if max_memory is None else int(max_memory * GB)) if streamed else None
    start = time.perf_counter()
    reference = record_reference(str(directory), example_names=examples, streaming=streaming)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_bytes": backend_for(host).peak_memory(host).allocated_bytes,
        "blocks": sum(len(record.calls) for stages in reference.records.values() for record in stages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm-layers", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="a full-size Covo checkpoint, or where to write one")
    parser.add_argument("--examples", default="english", help="comma-separated accuracy examples (default: english)")
    parser.add_argument("--max-memory", type=float, help="GB bounding the streamed process (default: none)")
    parser.add_argument("--child", choices=("whole", "streamed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    examples = [name for name in args.examples.split(",") if name]
    directory = args.dir or Path(tempfile.mkdtemp(prefix="voxport-streamed-reference-"))

    if args.child:
        print(json.dumps(measure(directory, args.child == "streamed", examples, args.max_memory)))
        return

    if not (directory / "config.json").is_file():
        from voxport.models.tiny import make_tiny_covo

        start = time.perf_counter()
        make_tiny_covo(directory, size="full", layers=args.llm_layers)
        seconds = time.perf_counter() - start
        print(f"wrote a full-size Covo with {args.llm_layers} LLM layers to {directory} in {seconds:.0f} s")
    results = {}
    for kind in ("whole", "streamed"):
        command = [sys.executable, __file__, "--dir", str(directory), "--examples", args.examples, "--child", kind]
        if args.max_memory is not None:
            command += ["--max-memory", str(args.max_memory)]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        if finished.returncode != 0:
            sys.exit(f"the {kind} reference failed:\n{finished.stderr[-3000:]}")
        results[kind] = json.loads(finished.stdout.strip().splitlines()[-1])

    whole, streamed = results["whole"], results["streamed"]
    bound = "none" if args.max_memory is None else f"{args.max_memory:g} GB"
    print(f"reference (CPU float32) of {directory}, examples {args.examples}, streamed with --max-memory {bound}")
    print(f"{'':10} {'seconds':>9} {'peak RSS GB':>12} {'blocks':>7}")
    for kind, result in results.items():
        print(f"{kind:10} {result['seconds']:9.1f} {result['peak_rss_bytes'] / 1e9:12.2f} {result['blocks']:7d}")
    ratio = streamed["seconds"] / whole["seconds"]
    print(f"time streamed / whole: {ratio:.2f}x (target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})")
    print(f"peak RSS streamed / whole: {streamed['peak_rss_bytes'] / whole['peak_rss_bytes']:.2f}x")


if __name__ == "__main__":
    main()
