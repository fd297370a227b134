"""voxport tts: Sesame CSM-1B speech from text."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from voxport.cli.common import (
    add_device_options,
    non_negative_int,
    positive_int,
    progress_bar,
    quiet_library_progress,
    sampling_options,
    temperature,
)
from voxport.runtime.files import check_output_dir, check_output_path

DEFAULT_CSM = "sesame/csm-1b"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "tts", help="speak text with Sesame CSM-1B",
        description="Synthesize 24 kHz speech from text with Sesame CSM-1B. Prints audio seconds, generation "
                    "seconds and the real-time factor (compute seconds / audio seconds; lower is better). "
                    "One text, a stream (--stream) or a batch of texts (--batch-file). A text longer than one "
                    "chunk (about 200 characters) is split at sentence and clause boundaries and spoken whole, "
                    "chunk by chunk, each chunk hearing the ones before so the voice stays the same.",
        epilog='examples: voxport tts "Hello from voxport." --output hello.wav --device cuda\n'
               '          voxport tts "A long answer..." --stream --output answer.wav\n'
               '          voxport tts --input-file chapter.txt --output chapter.wav\n'
               '          voxport tts --batch-file lines.txt --output-dir spoken/',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("text", nargs="?", help="the words to speak (or --input-file, --batch-file)")
    parser.add_argument("--input-file", type=Path, metavar="TEXT.txt",
                        help="speak the whole text of this UTF-8 file, of any length, into --output")
    parser.add_argument("--model", default=DEFAULT_CSM,
                        help=f"local checkpoint directory or hub id (default: {DEFAULT_CSM})")
    parser.add_argument("--output", "-o", default="out.wav", type=Path, help="audio file to write (default: out.wav)")
    parser.add_argument("--batch-file", type=Path, metavar="TEXTS.txt",
                        help="speak every non-empty line of this file, all in one batch, into --output-dir")
    parser.add_argument("--output-dir", type=Path, default=Path("tts-out"),
                        help="with --batch-file: where 0000.wav, 0001.wav, ... go, one per line (default: tts-out)")
    parser.add_argument("--stream", action="store_true",
                        help="write the audio progressively while it is generated (to OUTPUT.partial.wav, which "
                             "replaces OUTPUT when complete), and report the time to first audio")
    parser.add_argument("--engine", choices=["voxport", "transformers"], default="voxport",
                        help="voxport's static-cache generation loop (default), or transformers' generate() "
                             "for comparison (no --stream, --batch-file or --min-tokens)")
    parser.add_argument("--speaker", type=non_negative_int, default=0, help="speaker id of the new speech (default: 0)")
    parser.add_argument("--context", action="append", default=[], metavar="SPK:TEXT:AUDIO", type=_context_turn,
                        help="an earlier turn whose voice to continue: speaker id, its words and its audio file; "
                             "repeat for several turns, oldest first")
    parser.add_argument("--max-tokens", type=positive_int,
                        help="most audio frames for each chunk of text, 80 ms each (default: enough for slow speech "
                             "of the chunk's words, 2 s + 0.12 s a character)")
    parser.add_argument("--min-tokens", type=non_negative_int, default=0,
                        help="frames to generate before the model may end the speech (default: 0)")
    parser.add_argument("--temperature", type=temperature, default=0.9,
                        help="sampling temperature; 0 picks the most likely id, as --greedy (default: 0.9)")
    parser.add_argument("--top-k", type=non_negative_int, default=50, help="sample among the K best ids (default: 50)")
    parser.add_argument("--seed", type=int, help="seed for sampling; the same seed gives the same audio, alone or "
                                                 "in a batch (every --batch-file line uses it)")
    parser.add_argument("--greedy", action="store_true", help="always pick the most likely id (no sampling)")
    parser.add_argument("--compile", action="store_true",
                        help="capture the per-frame step as a CUDA graph (torch.compile) on CUDA; other devices "
                             "run eagerly and say so")
    parser.add_argument("--codes-out", type=Path, metavar="CODES.npy",
                        help="also save the audio codes, int64 [frames, 32], as a .npy file; with --batch-file "
                             "a directory for 0000.npy, 0001.npy, ...")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    add_device_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from voxport.audio.io import check_readable, check_writable
    from voxport.models.csm import CsmSpeech
    from voxport.models.longform import split_text
    from voxport.runtime.bandwidth import memory_bandwidth
    from voxport.runtime.devices import backend_for, resolve_device, resolve_dtype

    requests = _requests(args)
    _check_mode(args, requests)
    if args.batch_file is None:
        check_writable(args.output)
        if args.codes_out is not None:
            check_output_path(args.codes_out)
    else:
        check_output_dir(args.output_dir, "--output-dir")
        if args.codes_out is not None:
            check_output_dir(args.codes_out, "--codes-out")
    for turn in requests[0].context:
        check_readable(turn.audio)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    backend = backend_for(device)
    quiet_library_progress()

    tts = CsmSpeech.load(args.model, device, dtype)
    requests = [replace(request, max_frames=args.max_tokens or max(_frames(tts, request.text), args.min_tokens))
                for request in requests]
    if args.compile:
        reason = backend.compile_unsupported_reason()
        if reason:
            print(f"voxport: --compile ignored: {reason}", file=sys.stderr)
        else:
            tts.compile()
    bandwidth = memory_bandwidth(device, fresh=True)  # probed again after the run: see _bandwidth_bound
    backend.reset_peak_memory(device)
    if args.batch_file is not None:
        report = _speak_batch(tts, requests, args.output_dir, args.codes_out)
    elif len(split_text(requests[0].text)) > 1:
        report = _speak_long(tts, requests[0], args)
    elif args.stream:
        report = _speak_streaming(tts, requests[0], args.output)
    else:
        report = _speak(tts, requests[0], args)
    peak = backend.peak_memory(device)
    report |= {
        "load_seconds": tts.load_seconds, "device": str(device), "device_name": backend.device_name(device),
        "dtype": str(dtype).removeprefix("torch."), "engine": args.engine,
        "compiled": bool(args.compile and not backend.compile_unsupported_reason()),
        "peak_memory": {"allocated_bytes": peak.allocated_bytes, "reserved_bytes": peak.reserved_bytes,
                        "source": peak.source},
    }
    report |= _bandwidth_bound(tts, report, device, bandwidth)
    if args.json:
        print(json.dumps(report))
    else:
        print(_summary(report))
    if report["frames"] == 0:
        print("voxport: the model ended the speech at once; --min-tokens N forces N frames", file=sys.stderr)
    return 0


def _requests(args: argparse.Namespace) -> list:
    from voxport.errors import InputError
    from voxport.models.csm import SynthesisRequest
    from voxport.runtime.seeding import fresh_seed

    if sum(source is not None for source in (args.text, args.input_file, args.batch_file)) != 1:
        raise InputError("give the text to speak, --input-file with a text, or --batch-file with one text a line "
                         "(one of them)")
    if args.batch_file is not None:
        texts = _batch_texts(args.batch_file)
    else:
        texts = [args.text if args.input_file is None else _read_text(args.input_file, "--input-file")]
    seed = args.seed if args.seed is not None else fresh_seed()  # chosen here so every mode can report it
    return [  # max_frames: the real budget is set once the model (and its frame rate) is known
        SynthesisRequest(text=text, speaker=args.speaker, context=tuple(args.context),
                         max_frames=args.max_tokens or max(args.min_tokens, 1), min_frames=args.min_tokens,
                         top_k=args.top_k, seed=seed, **sampling_options(args))
        for text in texts
    ]


def _frames(tts, text: str) -> int:
    """The frame budget of a text spoken in one go: enough for slow speech of its words."""
    import math

    from voxport.models.longform import chunk_seconds

    return math.ceil(chunk_seconds(text, None) * tts.sample_rate / tts.frame_samples)


def _batch_texts(path: Path) -> list[str]:
    from voxport.errors import InputError

    texts = [line.strip() for line in _read_text(path, "--batch-file").splitlines() if line.strip()]
    if not texts:
        raise InputError(f"--batch-file {path} has no text: expected one text a line")
    return texts


def _read_text(path: Path, option: str) -> str:
    from voxport.errors import InputError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {option} {path}: {error}") from None
    if not text.strip():
        raise InputError(f"{option} {path} has no text: expected words to speak")
    return text


def _check_mode(args: argparse.Namespace, requests: list) -> None:
    from voxport.errors import InputError
    from voxport.models.longform import MAX_CHUNK_CHARS, split_text

    if args.engine == "transformers" and (args.stream or args.batch_file or args.min_tokens or args.compile):
        raise InputError("--engine transformers does not stream, batch, compile or take --min-tokens: use the "
                         "voxport engine")
    long_texts = [index for index, request in enumerate(requests) if len(split_text(request.text)) > 1]
    if long_texts and args.batch_file:
        raise InputError(f"--batch-file line {long_texts[0] + 1} is longer than one chunk ({MAX_CHUNK_CHARS} "
                         f"characters): speak long texts one at a time (--input-file)")
    if long_texts and (args.engine == "transformers" or args.codes_out or args.min_tokens):
        raise InputError(f"a text longer than one chunk ({MAX_CHUNK_CHARS} characters) is spoken chunk by chunk "
                         f"by the voxport engine, without --codes-out or --min-tokens")
    if long_texts and any(turn.speaker != args.speaker for turn in args.context):
        raise InputError("a long text continues one voice: every --context turn must be --speaker's")
    if args.stream and args.batch_file:
        raise InputError("--stream speaks one text: drop --batch-file or --stream")


def _speak(tts, request, args: argparse.Namespace) -> dict:
    from voxport.audio.io import write_audio

    if args.engine == "transformers":
        result = tts.generate_with_transformers(request)
    else:
        with progress_bar(request.max_frames, "frames", "generating") as progress:
            result = tts.generate(request, on_frame=progress)
    write_audio(args.output, result.audio, result.sample_rate)
    if args.codes_out is not None:
        _write_codes(args.codes_out, result.codes)
    return {"output": str(args.output), "codes_out": str(args.codes_out) if args.codes_out else None,
            **_result_fields(result)}


def _speak_streaming(tts, request, output: Path) -> dict:
    """One text, its audio written while it is made."""
    pieces = ((chunk.audio, len(chunk.codes)) for chunk in tts.stream(request))
    return _write_as_made(tts, pieces, output) | {"seed": request.seed}


def _speak_long(tts, request, args: argparse.Namespace) -> dict:
    """A text of any length, chunk by chunk, each chunk hearing the ones before; written while it is made."""
    from voxport.audio.io import load_audio
    from voxport.models.base import SpeechSpec, VoiceSample
    from voxport.models.longform import speak_long, split_text

    voice = tuple(VoiceSample(load_audio(turn.audio, tts.sample_rate), turn.text) for turn in request.context)
    spec = SpeechSpec(request.text, speaker=request.speaker, context=voice, temperature=request.temperature,
                      top_k=request.top_k, seed=request.seed, greedy=request.greedy)
    cap = args.max_tokens * tts.frame_samples / tts.sample_rate if args.max_tokens else None
    chunks = len(split_text(request.text))
    with progress_bar(chunks, "chunks", "speaking") as progress:
        def pieces():
            for piece in speak_long(tts, spec, cap):
                progress(piece.chunk)
                yield piece.spoken.audio, piece.spoken.output_tokens

        return {"chunks": chunks} | _write_as_made(tts, pieces(), args.output) | {"seed": request.seed}


def _write_as_made(tts, pieces, output: Path) -> dict:
    """Append each (audio, frames) piece as it comes to OUTPUT.partial.wav (playable so far), which replaces
    the output only when the speech is complete; a failed or interrupted run leaves the output as it was."""
    import time

    import soundfile as sf

    from voxport.runtime.files import growing_file

    start = time.perf_counter()
    first_audio, frames, samples = None, 0, 0
    with growing_file(output) as partial, \
            sf.SoundFile(partial, "w", samplerate=tts.sample_rate, channels=1, subtype="PCM_16") as sink:
        for audio, made in pieces:
            first_audio = time.perf_counter() - start if first_audio is None else first_audio
            sink.write(np.clip(audio, -1.0, 1.0))
            sink.flush()  # the header now tells players how much there is
            frames += made
            samples += len(audio)
    seconds = time.perf_counter() - start
    audio_seconds = samples / tts.sample_rate
    return {"output": str(output), "sample_rate": tts.sample_rate, "frames": frames, "audio_seconds": audio_seconds,
            "generation_seconds": seconds, "time_to_first_audio_seconds": first_audio,
            "rtf": seconds / audio_seconds if audio_seconds else None}


def _speak_batch(tts, requests: list, directory: Path, codes_directory: Path | None) -> dict:
    from voxport.audio.io import write_audio

    with progress_bar(requests[0].max_frames, "frames", "generating") as progress:
        results = tts.generate_batch(requests, on_frame=progress)
    directory.mkdir(parents=True, exist_ok=True)
    outputs = [str(write_audio(directory / f"{index:04d}.wav", result.audio, result.sample_rate))
               for index, result in enumerate(results)]
    if codes_directory is not None:
        codes_directory.mkdir(parents=True, exist_ok=True)
        for index, result in enumerate(results):
            _write_codes(codes_directory / f"{index:04d}.npy", result.codes)
    audio_seconds = sum(result.audio_seconds for result in results)
    compute = results[0].compute_seconds  # one batch: the timings are shared
    return {"outputs": outputs, "sample_rate": tts.sample_rate, "batch": len(results),
            "frames": sum(result.frames for result in results), "frames_per_output": [r.frames for r in results],
            "audio_seconds": audio_seconds, "generation_seconds": results[0].timings["generation_seconds"],
            "rtf": compute / audio_seconds if audio_seconds else None, "seed": results[0].seed}


def _write_codes(path: Path, codes: np.ndarray) -> None:
    from voxport.runtime.files import replaced_atomically

    with replaced_atomically(path) as temporary, open(temporary, "wb") as stream:
        np.save(stream, codes)


def _result_fields(result) -> dict:
    return {"sample_rate": result.sample_rate, "frames": result.frames, "audio_seconds": result.audio_seconds,
            "generation_seconds": result.timings["generation_seconds"],
            "prompt_seconds": result.timings["prompt_seconds"], "decode_seconds": result.timings["decode_seconds"],
            "rtf": result.rtf, "seed": result.seed}


def _bandwidth_bound(tts, report: dict, device, before) -> dict:
    """How close generation came to the memory-bandwidth bound: the weight bytes the run read (each prompt's
    prefill reads the backbone once, every frame step all of its weights, whatever the batch) over the
    bandwidth (the faster of probes just before and just after the run where no published figure applies: a
    shared machine's bandwidth drifts, and one probe at a slow moment would flatter the run), against the
    measured seconds (docs/performance.md explains the figures)."""
    from voxport.runtime.bandwidth import faster_of_another_probe
    from voxport.validate.performance import bound_fraction

    bandwidth = faster_of_another_probe(device, before)
    steps = max(report.get("frames_per_output") or [report["frames"]])
    step_bytes = tts.weight_bytes_per_step()
    bytes_read = steps * step_bytes + report.get("chunks", 1) * tts.weight_bytes_per_prompt()
    return {"bandwidth_bytes_per_second": bandwidth.bytes_per_second, "bandwidth_source": bandwidth.source,
            "bandwidth_probes_bytes_per_second": list(bandwidth.probes),
            "bytes_read_per_step": step_bytes, "bytes_read": bytes_read,
            "bound_fraction": bound_fraction(1, report["generation_seconds"], bytes_read, bandwidth.bytes_per_second)}


def _summary(report: dict) -> str:
    where = report.get("output") or f"{report['batch']} files in {Path(report['outputs'][0]).parent}"
    rtf = "n/a" if report["rtf"] is None else f"{report['rtf']:.3f}"
    first = report.get("time_to_first_audio_seconds")
    chunks = f" in {report['chunks']} chunks" if report.get("chunks") else ""
    return (f"wrote {where}: {report['audio_seconds']:.2f} s of audio ({report['frames']} frames{chunks}) in "
            f"{report['generation_seconds']:.2f} s of generation; RTF {rtf}"
            + (f"; first audio after {first * 1000:.0f} ms" if first is not None else "")
            + f" on {report['device']} ({report['device_name']}, {report['dtype']}, {report['engine']} engine)"
            + ("" if report["bound_fraction"] is None else
               f"; {report['bound_fraction']:.2f} of the memory-bandwidth bound" + _probes(report))
            + "; "
            f"peak memory {report['peak_memory']['allocated_bytes'] / 2**30:.2f} GiB "
            f"({report['peak_memory']['source']}); seed {report['seed']}")


def _probes(report: dict) -> str:
    from voxport.runtime.bandwidth import probes_text

    probes = report["bandwidth_probes_bytes_per_second"]
    return f" (probed {probes_text(probes)})" if probes else ""


def _context_turn(text: str):
    """SPK:TEXT:AUDIO; the words may contain colons, so the audio path is what follows the last one."""
    from voxport.models.csm import ContextTurn

    speaker, _, rest = text.partition(":")
    words, _, audio = rest.rpartition(":")
    if not speaker.isdigit() or not words.strip() or not audio:
        raise argparse.ArgumentTypeError(f"expected SPK:TEXT:AUDIO such as 0:Hello there.:hello.wav, got {text!r}")
    return ContextTurn(speaker=int(speaker), text=words, audio=audio)
