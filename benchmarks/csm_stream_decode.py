"""Streaming CSM's codec cost per chunk, early and late in a long stream: Mimi with its state kept between
chunks next to the former way (each chunk decoded again with up to `sliding_window` frames of history before
it), interleaved chunk by chunk in one process, on the same random codes.

Prints per way the median seconds of a chunk among the first chunks and among the last ones (wall clock and
process CPU time: on a shared CPU, the CPU time of a single-threaded run measures the work, not the waiting),
and how far each way's joined chunks are from one-shot decoding.

    python benchmarks/csm_stream_decode.py                  # the tiny checkpoint's codec
    python benchmarks/csm_stream_decode.py --full-size      # Mimi's real architecture, random weights
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import CsmConfig, MimiModel

from voxport.models.csm import CsmSpeech
from voxport.models.csm.codec_stream import MimiDecodeStream
from voxport.models.tiny import make_tiny_csm

CLOCKS = ("wall", "cpu")


@torch.inference_mode()
def former_chunk(codec: MimiModel, codes: torch.Tensor, start: int, end: int, window: int) -> torch.Tensor:
    """The way voxport streamed before: frames start..end decoded with up to `window` frames before them."""
    first = max(0, start - window)
    audio = codec.decode(codes[..., first:end]).audio_values
    return audio[..., (start - first) * audio.shape[-1] // (end - first) :]


def timed(run) -> tuple[torch.Tensor, dict[str, float]]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true", help="Mimi's real architecture, random weights")
    parser.add_argument("--frames", type=int, default=330, help="frames in the stream")
    parser.add_argument("--chunk", type=int, default=8, help="frames a chunk (the first one has 2)")
    parser.add_argument("--sampled", type=int, default=5, help="chunks timed at each end of the stream")
    parser.add_argument("--threads", type=int, help="CPU threads (1 on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.full_size:
        config = CsmConfig().codec_config
        codec = MimiModel(config).eval()
    else:
        tts = CsmSpeech.load(
            make_tiny_csm(Path(tempfile.mkdtemp(prefix="voxport-stream-bench-"))), torch.device("cpu"), torch.float32
        )
        codec, config = tts.model.codec_model, tts.config.codec_config
    window = config.sliding_window
    codes = torch.randint(
        0, config.codebook_size, (1, config.num_quantizers, args.frames), generator=torch.Generator().manual_seed(0)
    )
    bounds = [0, 2, *range(2 + args.chunk, args.frames, args.chunk), args.frames]
    chunks = list(zip(bounds, bounds[1:]))
    timed_chunks = set(range(1, 1 + args.sampled)) | set(range(len(chunks) - args.sampled, len(chunks)))
    print(
        f"{'real-size' if args.full_size else 'tiny'} Mimi decoder, CPU ({torch.get_num_threads()} threads), "
        f"{args.frames} frames in {len(chunks)} chunks of {args.chunk}, former history window {window} frames"
    )

    stream = MimiDecodeStream(codec)
    stream.decode(codes[..., :2])  # warm-up, on a stream of its own
    former_chunk(codec, codes, 2, 2 + args.chunk, window)
    stream = MimiDecodeStream(codec)
    times = {(way, clock): {"early": [], "late": []} for way in ("kept state", "former") for clock in CLOCKS}
    outputs: dict[str, list[torch.Tensor]] = {"kept state": [], "former": []}
    for index, (start, end) in enumerate(chunks):
        audio, spent = timed(lambda: stream.decode(codes[..., start:end]))
        outputs["kept state"].append(audio)
        if index not in timed_chunks:
            continue
        former, former_spent = timed(lambda: former_chunk(codec, codes, start, end, window))
        outputs["former"].append(former)
        part = "early" if index <= args.sampled else "late"
        for clock in CLOCKS:
            times["kept state", clock][part].append(spent[clock])
            times["former", clock][part].append(former_spent[clock])
    for clock in CLOCKS:
        for way in ("former", "kept state"):
            parts = {part: statistics.median(values) for part, values in times[way, clock].items()}
            print(
                f"{clock:5s} {way:11s} chunk early {parts['early'] * 1000:8.1f} ms   "
                f"late {parts['late'] * 1000:8.1f} ms"
                f"   late / early {parts['late'] / parts['early']:.2f}"
            )
        late = {way: statistics.median(times[way, clock]["late"]) for way in ("former", "kept state")}
        print(f"{clock:5s} late chunks: kept state {late['former'] / late['kept state']:.2f}x faster than former")
    with torch.inference_mode():
        one_shot = codec.decode(codes).audio_values
    joined = torch.cat(outputs["kept state"], dim=-1)
    print(
        f"kept state joined vs one-shot: max abs difference {float((joined - one_shot).abs().max()):.2e} "
        f"(peak {float(one_shot.abs().max()):.2e})"
    )


if __name__ == "__main__":
    main()
