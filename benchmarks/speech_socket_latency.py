"""Time to first audio on the speech socket (WS /v1/text-to-speech/{voice_id}/stream-input), median of --runs, on
one `voxport serve` with a tiny CSM, beside the HTTP stream's for the same first chunk, in one run.

Three clocks, each from the moment the client has sent what makes the first chunk sure to the first audio:
  sentence: the text streamed word by word; the clock starts at the word that makes the first chunk sure (the
            first whole word after the sentence that closes it: from then on no later text can change it);
  flush:    the first sentence, then {"flush": true} (a client that flushes at each sentence's end);
  http:     POST /v1/audio/speech with stream_format "audio" for that first chunk's text, to its first bytes.
The socket's clocks differ from the HTTP one by the socket's own work (planning the text so far at each word).

    python benchmarks/speech_socket_latency.py [--runs 7] [--max-seconds 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

from local_server import local_server
from voxport.models.tiny import make_tiny_csm, write_tiny_checkpoint
from voxport.services.speech import SpeechInput, SpeechRequest, SpeechService

TEXT = (
    "The committee met early on Monday to review the budget for the coming year, line by line. "
    "Dr. Smith said the cost of the new road rose by twelve percent, to five million dollars in all. "
    "Everyone agreed, after a long talk, that the plan should go ahead. Thank you all for coming today."
)


def first_chunk(model: Path) -> tuple[str, int]:
    """The first chunk's text, and how many words of TEXT make it sure (SpeechInput's own rule, run here)."""
    service = SpeechService.load(model, *_cpu())
    stream = SpeechInput(service, SpeechRequest("", seed=1))
    for index, word in enumerate(re.findall(r"\S+\s*", TEXT)):
        if ready := stream.add(word):
            return ready[0].plan.chunks[0], index + 1
    raise SystemExit("TEXT is too short to make its first chunk sure before its end")


def _cpu():
    import torch

    return torch.device("cpu"), torch.float32


def socket_latency(base: str, query: str, pieces: list[str], flush: bool) -> float:
    """Seconds from sending the last of `pieces` (then a flush, if asked) to the first audio message."""
    url = base.replace("http://", "ws://") + f"/v1/text-to-speech/alloy/stream-input?{query}"
    with connect(url, open_timeout=60) as socket:
        socket.send(json.dumps({"text": " "}))
        for piece in pieces[:-1]:
            socket.send(json.dumps({"text": piece}))
        started = time.perf_counter()
        socket.send(json.dumps({"text": pieces[-1], "flush": flush}))
        while "audio" not in (message := json.loads(socket.recv(timeout=300))):
            raise SystemExit(f"unexpected message: {message}")
        return time.perf_counter() - started


def http_latency(base: str, text: str, max_seconds: float) -> float:
    body = {"model": "tts", "input": text, "seed": 1, "max_seconds": max_seconds, "response_format": "pcm"}
    started = time.perf_counter()
    with httpx.stream("POST", f"{base}/v1/audio/speech", json=body | {"stream_format": "audio"}, timeout=300) as reply:
        for data in reply.iter_bytes():
            if data:
                return time.perf_counter() - started
    raise SystemExit("no audio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-seconds", type=float, default=2.0, help="each chunk's cap (the tiny model rarely ends)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = write_tiny_checkpoint(make_tiny_csm, Path(tempfile.mkdtemp()) / "tiny-csm", seed=0)
    chunk, sure_at = first_chunk(model)
    words = re.findall(r"\S+\s*", TEXT)
    first_sentence = re.match(r".*?[.!?]\s", TEXT)
    assert first_sentence is not None
    query = f"model_id=tts&seed=1&max_seconds={args.max_seconds}&output_format=pcm_24000"
    voices = tempfile.mkdtemp(prefix="voxport-voices-")
    with local_server("--model", f"tts={model}", "--device", args.device, "--voices-dir", voices) as base:
        clocks = {
            "sentence": lambda: socket_latency(base, query, words[:sure_at], flush=False),
            "flush": lambda: socket_latency(base, query, re.findall(r"\S+\s*", first_sentence.group(0)), flush=True),
            "http": lambda: http_latency(base, chunk, args.max_seconds),
        }
        for clock in clocks.values():
            clock()  # warm-up
        times: dict[str, list[float]] = {name: [] for name in clocks}
        for _ in range(args.runs):
            for name, clock in clocks.items():
                times[name].append(clock())
    print(f"first chunk: {len(chunk)} characters, sure after word {sure_at} of {len(words)}; device {args.device}")
    for name, values in times.items():
        print(
            f"{name:>9}: median {statistics.median(values) * 1000:7.1f} ms  (runs: {len(values)}, "
            f"min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"
        )
    ratio = statistics.median(times["sentence"]) / statistics.median(times["http"])
    print(f"socket (sentence) / http first audio: {ratio:.2f}")


if __name__ == "__main__":
    main()
