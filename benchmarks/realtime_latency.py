"""Time to the first audio of a realtime reply: from the last appended audio to the first
response.output_audio.delta, on `voxport serve` through the openai SDK's realtime client (a tiny Covo unless
--model names another checkpoint).

Two ways a turn ends, each over --turns turns of one conversation (median and spread printed):
- manual commit: the whole turn appended at once, then commit and response.create; timed from the commit;
- server VAD: the turn (speech, then silence) appended in 200 ms pieces at real-time pace; timed from the
  moment the end of speech was sent, so it includes the silence VAD waits for (silence_duration_ms) before it
  commits the turn.
Replies are --max-tokens tokens long (a reply's audio is sent once token2wav has rendered it).

    python benchmarks/realtime_latency.py [--turns 5] [--max-tokens 8] [--audio CLIP] [--device cpu]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
from openai import OpenAI

from local_server import local_server
from voxport.audio.io import resample
from voxport.models.tiny import make_tiny_covo, write_tiny_checkpoint

RATE = 24000
PIECE = RATE // 5  # 200 ms a append
CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "covo-audio" / "003000297.wav"


def first_audio(connection) -> float:
    """Waits for the reply's first audio delta (then for its end); the moment the first came."""
    first = None
    while (event := connection.recv()).type != "response.done":
        if event.type == "response.output_audio.delta" and first is None:
            first = time.perf_counter()
        if event.type == "error":
            raise SystemExit(f"the server refused an event: {event.error.message}")
    if first is None:
        raise SystemExit(f"a reply had no audio ({event.response.status}): raise --max-tokens")
    return first


def session(connection, max_tokens: int, vad: bool) -> None:
    detection = {"type": "server_vad"} if vad else None
    connection.session.update(
        session={"type": "realtime", "max_output_tokens": max_tokens, "audio": {"input": {"turn_detection": detection}}}
    )
    while connection.recv().type != "session.updated":
        pass


def manual_turns(client: OpenAI, speech: bytes, turns: int, max_tokens: int) -> list[float]:
    waits = []
    with client.realtime.connect(model="chat") as connection:
        session(connection, max_tokens, vad=False)
        for _ in range(turns):
            connection.input_audio_buffer.append(audio=base64.b64encode(speech).decode())
            sent = time.perf_counter()
            connection.input_audio_buffer.commit()
            connection.response.create()
            waits.append(first_audio(connection) - sent)
    return waits


def vad_turns(client: OpenAI, speech: bytes, silence: bytes, turns: int, max_tokens: int) -> list[float]:
    waits = []
    with client.realtime.connect(model="chat") as connection, ThreadPoolExecutor(1) as listener:
        session(connection, max_tokens, vad=True)
        for _ in range(turns):
            reply = listener.submit(first_audio, connection)  # events heard while the turn is still being sent
            audio, began = speech + silence, time.perf_counter()
            for index, start in enumerate(range(0, len(audio), PIECE * 2)):
                time.sleep(max(0.0, began + (index + 1) * 0.2 - time.perf_counter()))  # a microphone's pace
                connection.input_audio_buffer.append(audio=base64.b64encode(audio[start : start + PIECE * 2]).decode())
            speech_end = began + len(speech) / 2 / RATE  # when the last speech sample was spoken
            waits.append(reply.result(timeout=120) - speech_end)
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--audio", type=Path, default=CLIP, help="a speech clip (its first 1.9 s are a turn)")
    parser.add_argument("--model", type=Path, help="a Covo checkpoint (default: a tiny random one)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not args.audio.is_file():
        raise SystemExit(f"{args.audio}: no such clip: give --audio a speech recording")
    samples, rate = sf.read(args.audio, dtype="float32", always_2d=True)
    speech = (resample(samples.mean(axis=1), rate, RATE)[: int(1.9 * RATE)] * 32767).astype("<i2").tobytes()
    silence = bytes(int(1.2 * RATE) * 2)
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or write_tiny_checkpoint(make_tiny_covo, Path(folder) / "tiny-covo", seed=0)
        with local_server("--model", f"chat={model}", "--device", args.device) as base:
            client = OpenAI(base_url=f"{base}/v1", api_key="none")
            manual_turns(client, speech, 1, args.max_tokens)  # warm-up
            results = {
                "manual commit (from the commit)": manual_turns(client, speech, args.turns, args.max_tokens),
                "server VAD (from the end of speech)": vad_turns(client, speech, silence, args.turns, args.max_tokens),
            }
    print(f"time to the first audio delta, {args.turns} turns of one conversation, {args.max_tokens}-token replies:")
    for name, waits in results.items():
        print(
            f"  {name:38s} median {statistics.median(waits) * 1000:7.0f} ms"
            f"  (min {min(waits) * 1000:.0f}, max {max(waits) * 1000:.0f})"
        )


if __name__ == "__main__":
    main()
