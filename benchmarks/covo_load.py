"""Covo-Audio-Chat loading cost next to the cost of reading the same safetensors files raw, in one run.

Writes a full-size random checkpoint (`voxport make-tiny covo DIR --size full --layers N`: Covo's real
widths, vocabulary and encoder, N LLM layers) unless --dir already holds one; then alternates a raw read of
every byte of every shard with voxport's CovoAudioChat.load (meta-device init, strict shard loading,
tokenizer) and prints both and their ratio. Target: voxport <= 1.5x the raw read. Both read from the page
cache after a first warm-up read, so the comparison is of work, not of the disk.

    python benchmarks/covo_load.py [--llm-layers 2] [--repeats 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from voxport.models.covo import CovoAudioChat
from voxport.models.tiny import make_tiny_covo
from voxport.runtime.weights import safetensors_files


def raw_read_seconds(files: list[Path]) -> float:
    """Every byte of every shard into memory, and nothing else: the floor for any loader."""
    start = time.perf_counter()
    for file in files:
        buffer = np.empty(file.stat().st_size, dtype=np.uint8)  # not zero-filled: only the read is timed
        with open(file, "rb", buffering=0) as stream:
            stream.readinto(memoryview(buffer))
        del buffer
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm-layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dir", type=Path, help="a full-size checkpoint to use, or where to write one (default: a temporary directory)"
    )
    args = parser.parse_args()

    directory = args.dir or Path(tempfile.mkdtemp(prefix="voxport-covo-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    try:
        if not (directory / "config.json").is_file():
            start = time.perf_counter()
            make_tiny_covo(directory, size="full", layers=args.llm_layers)
            print(
                f"wrote a full-size Covo checkpoint with {args.llm_layers} LLM layers in "
                f"{time.perf_counter() - start:.1f} s to {directory}"
            )
        files = safetensors_files(directory)
        size = sum(file.stat().st_size for file in files) / 1e9
        raw_read_seconds(files)  # warm the page cache once, so every timed run reads from memory alike
        raw, ours, init, load = [], [], [], []
        for repeat in range(args.repeats):
            raw.append(raw_read_seconds(files))
            start = time.perf_counter()
            model = CovoAudioChat.load(directory, device, torch.bfloat16)
            ours.append(time.perf_counter() - start)
            init.append(model.init_seconds)
            load.append(model.load_seconds)
            del model
            print(
                f"run {repeat}: raw read {raw[-1]:.2f} s | voxport load {ours[-1]:.2f} s "
                f"(init {init[-1]:.2f} s, weights {load[-1]:.2f} s, rest: config + tokenizer)"
            )
        ratio = statistics.median(ours) / statistics.median(raw)
        print(
            f"median raw read {statistics.median(raw):.2f} s ({size / statistics.median(raw):.2f} GB/s); "
            f"median voxport load {statistics.median(ours):.2f} s; ratio voxport/raw = {ratio:.2f} "
            f"(target <= 1.5)"
        )
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
