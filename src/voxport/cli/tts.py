"""voxport tts: Sesame CSM-1B speech from text."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from voxport.cli.common import add_device_options, non_negative_int, positive_int, quiet_library_progress
from voxport.runtime.files import check_output_path

DEFAULT_CSM = "sesame/csm-1b"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "tts", help="speak text with Sesame CSM-1B",
        description="Synthesize 24 kHz speech from text with Sesame CSM-1B. Prints audio seconds, generation "
                    "seconds and the real-time factor (compute seconds / audio seconds; lower is better).",
        epilog='example: voxport tts "Hello from voxport." --output hello.wav --device cuda',
    )
    parser.add_argument("text", help="the words to speak")
    parser.add_argument("--model", default=DEFAULT_CSM,
                        help=f"local checkpoint directory or hub id (default: {DEFAULT_CSM})")
    parser.add_argument("--output", "-o", default="out.wav", type=Path, help="audio file to write (default: out.wav)")
    parser.add_argument("--speaker", type=non_negative_int, default=0, help="speaker id of the new speech (default: 0)")
    parser.add_argument("--context", action="append", default=[], metavar="SPK:TEXT:AUDIO", type=_context_turn,
                        help="an earlier turn whose voice to continue: speaker id, its words and its audio file; "
                             "repeat for several turns, oldest first")
    parser.add_argument("--max-tokens", type=positive_int, default=125,
                        help="most audio frames to generate, 80 ms each (default: 125 = 10 s)")
    parser.add_argument("--min-tokens", type=non_negative_int, default=0,
                        help="frames to generate before the model may end the speech (default: 0)")
    parser.add_argument("--temperature", type=float, default=0.9, help="sampling temperature (default: 0.9)")
    parser.add_argument("--top-k", type=non_negative_int, default=50, help="sample among the K best ids (default: 50)")
    parser.add_argument("--seed", type=int, help="seed for sampling; the same seed gives the same audio")
    parser.add_argument("--greedy", action="store_true", help="always pick the most likely id (no sampling)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model where the device supports it")
    parser.add_argument("--codes-out", type=Path, metavar="CODES.npy",
                        help="also save the audio codes, int64 [frames, 32], as a .npy file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    add_device_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from voxport.audio.io import check_readable, check_writable, write_audio
    from voxport.models.csm import CsmSpeech, SynthesisRequest
    from voxport.runtime.devices import backend_for, dtype_name, resolve_device, resolve_dtype
    from voxport.runtime.files import replaced_atomically

    request = SynthesisRequest(
        text=args.text, speaker=args.speaker, context=tuple(args.context), max_frames=args.max_tokens,
        min_frames=args.min_tokens, temperature=args.temperature, top_k=args.top_k, seed=args.seed,
        greedy=args.greedy,
    )
    check_writable(args.output)
    if args.codes_out is not None:
        check_output_path(args.codes_out)
    for turn in request.context:
        check_readable(turn.audio)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    backend = backend_for(device)
    quiet_library_progress()

    tts = CsmSpeech.load(args.model, device, dtype)
    if args.compile:
        reason = backend.compile_unsupported_reason()
        if reason:
            print(f"voxport: --compile ignored: {reason}", file=sys.stderr)
        else:
            tts.compile()
    backend.reset_peak_memory(device)
    with _frame_progress(request.max_frames) as progress:
        result = tts.generate(request, on_frame=progress)
    peak = backend.peak_memory(device)

    write_audio(args.output, result.audio, result.sample_rate)
    if args.codes_out is not None:
        with replaced_atomically(args.codes_out) as temporary, open(temporary, "wb") as stream:
            np.save(stream, result.codes)

    report = {
        "output": str(args.output),
        "codes_out": str(args.codes_out) if args.codes_out else None,
        "sample_rate": result.sample_rate,
        "frames": result.frames,
        "audio_seconds": result.audio_seconds,
        "generation_seconds": result.timings["generation_seconds"],
        "prompt_seconds": result.timings["prompt_seconds"],
        "decode_seconds": result.timings["decode_seconds"],
        "load_seconds": tts.load_seconds,
        "rtf": result.rtf,
        "seed": result.seed,
        "device": str(device),
        "device_name": backend.device_name(device),
        "dtype": dtype_name(dtype),
        "compiled": bool(args.compile and not backend.compile_unsupported_reason()),
        "peak_memory": {"allocated_bytes": peak.allocated_bytes, "reserved_bytes": peak.reserved_bytes,
                        "source": peak.source},
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {args.output}: {result.audio_seconds:.2f} s of audio ({result.frames} frames) "
              f"in {result.timings['generation_seconds']:.2f} s of generation; RTF {result.rtf:.3f} "
              f"on {device} ({report['device_name']}, {report['dtype']}); "
              f"peak memory {peak.allocated_bytes / 2**30:.2f} GiB ({peak.source}); seed {result.seed}")
    if result.frames == 0:
        print("voxport: the model ended the speech at once; --min-tokens N forces N frames", file=sys.stderr)
    return 0


@contextmanager
def _frame_progress(total: int):
    """A frame counter on stderr while generating, only when a person is watching it."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="frame", desc="generating", file=sys.stderr, disable=not sys.stderr.isatty(),
               leave=False)
    try:
        yield lambda done: bar.update(done - bar.n)
    finally:
        bar.close()


def _context_turn(text: str):
    """SPK:TEXT:AUDIO; the words may contain colons, so the audio path is what follows the last one."""
    from voxport.models.csm import ContextTurn

    speaker, _, rest = text.partition(":")
    words, _, audio = rest.rpartition(":")
    if not speaker.isdigit() or not words.strip() or not audio:
        raise argparse.ArgumentTypeError(f"expected SPK:TEXT:AUDIO such as 0:Hello there.:hello.wav, got {text!r}")
    return ContextTurn(speaker=int(speaker), text=words, audio=audio)
