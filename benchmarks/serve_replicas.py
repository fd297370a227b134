"""voxport serve throughput at 1 and at 2 replicas on Ray Serve (and the single-process server beside them),
same tiny checkpoint, same requests, in one run.

For each server: started on a free port, warmed up, then --requests seeded speech requests (each --frames 80 ms
frames of audio, raw PCM) sent --concurrency at a time through its HTTP entry. Prints requests per second and
seconds of audio made per second of wall time, and the ratio 2 replicas / 1 replica. Each replica takes one
CPU (--device cpu): the ratio nears 2 only with 2 free cores besides the entry's; on accelerators, run it with
--device cuda (or npu) to see one replica per device.

    python benchmarks/serve_replicas.py [--requests 32] [--concurrency 8] [--frames 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from voxport.models.tiny import make_tiny_csm, write_tiny_checkpoint

SAMPLE_RATE = 24000  # CSM's output rate: PCM bytes / 2 / this = audio seconds
STARTUP_SECONDS = 600


class Server:
    def __init__(self, model: Path, device: str, voices: Path, replicas: int | None):
        extra = ["--replicas", str(replicas)] if replicas else []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxport",
                "serve",
                "--model",
                f"tts={model}",
                "--device",
                device,
                "--port",
                "0",
                "--voices-dir",
                str(voices),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        began, lines = time.monotonic(), []
        for line in self.process.stdout:
            lines.append(line)
            if found := re.search(r"serving .* on (http://\S+)", line):
                self.base = found.group(1)
                break
            if time.monotonic() - began > STARTUP_SECONDS:
                break
        else:
            raise RuntimeError(f"server did not start: {''.join(lines)}")
        self.process.stdout.close()  # nothing more is read: the server's later lines are dropped

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


def measure(base: str, requests: int, concurrency: int, frames: int) -> tuple[float, float]:
    """(requests/s, audio seconds/s) over `requests` sent `concurrency` at a time."""

    def ask(index: int) -> float:
        body = {
            "model": "tts",
            "input": f"Line number {index} of the benchmark.",
            "response_format": "pcm",
            "seed": index,
            "max_seconds": frames * 0.08,
        }
        response = httpx.post(f"{base}/v1/audio/speech", json=body, timeout=600)
        response.raise_for_status()
        return len(response.content) / 2 / SAMPLE_RATE

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(ask, range(concurrency)))  # warm-up: every replica has run once
        began = time.perf_counter()
        audio = sum(pool.map(ask, range(requests)))
    wall = time.perf_counter() - began
    return requests / wall, audio / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8, help="80 ms frames a request (default: 8)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", type=Path, help="checkpoint to serve (default: a tiny random CSM)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = args.model or write_tiny_checkpoint(make_tiny_csm, scratch / "tiny-csm", seed=0)
        results = {}
        for label, replicas in (("single process", None), ("1 replica", 1), ("2 replicas", 2)):
            server = Server(model, args.device, scratch / f"voices-{replicas}", replicas)
            try:
                results[label] = measure(server.base, args.requests, args.concurrency, args.frames)
            finally:
                server.stop()
    print(f"{args.requests} requests, {args.concurrency} at a time, {args.frames} frames each, on {args.device}")
    print(f"{'server':<16}{'requests/s':>12}{'audio s/s':>12}")
    for label, (rate, audio) in results.items():
        print(f"{label:<16}{rate:>12.2f}{audio:>12.2f}")
    one, two = results["1 replica"], results["2 replicas"]
    print(f"2 replicas / 1 replica: {two[0] / one[0]:.2f}x requests/s, {two[1] / one[1]:.2f}x audio s/s")


if __name__ == "__main__":
    main()
