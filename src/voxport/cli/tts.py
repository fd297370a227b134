"""voxport tts: speech from text (Sesame CSM-1B by default), through the speech service."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from voxport.cli.common import (
    add_device_options,
    add_sampling_options,
    non_negative_int,
    positive_int,
    progress_bar,
    quiet_library_progress,
)
from voxport.models.registry import default_source
from voxport.runtime.files import check_output_dir, check_output_path


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "tts",
        help="speak text (Sesame CSM-1B by default)",
        description="Synthesize speech from text with a model that speaks text. Prints audio seconds, generation "
        "seconds and the real-time factor (compute seconds / audio seconds; lower is better). "
        "One text, a stream (--stream) or a batch of texts (--batch-file). A text longer than one "
        "chunk (about 200 characters) is split at sentence and clause boundaries and spoken whole, "
        "chunk by chunk, each chunk hearing the ones before so the voice stays the same.",
        epilog='examples: voxport tts "Hello from voxport." --output hello.wav --device cuda\n'
        '          voxport tts "A long answer..." --stream --output answer.wav\n'
        "          voxport tts --input-file chapter.txt --output chapter.wav\n"
        "          voxport tts --batch-file lines.txt --output-dir spoken/\n"
        "          voxport tts '<speak>Hi.<break time=\"700ms\"/>It is 10:30.</speak>' --timestamps words.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("text", nargs="?", help="the words to speak (or --input-file, --batch-file)")
    parser.add_argument(
        "--input-file",
        type=Path,
        metavar="TEXT.txt",
        help="speak the whole text of this UTF-8 file, of any length, into --output",
    )
    parser.add_argument(
        "--model",
        default=default_source("speaks_text"),
        help="local checkpoint directory or hub id (default: %(default)s)",
    )
    parser.add_argument("--output", "-o", default="out.wav", type=Path, help="audio file to write (default: out.wav)")
    parser.add_argument(
        "--batch-file",
        type=Path,
        metavar="TEXTS.txt",
        help="speak every non-empty line of this file, all in one batch, into --output-dir",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("tts-out"),
        help="with --batch-file: where 0000.wav, 0001.wav, ... go, one per line (default: tts-out)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="write the audio progressively while it is generated (to OUTPUT.partial.wav, which "
        "replaces OUTPUT when complete), and report the time to first audio",
    )
    parser.add_argument(
        "--engine",
        choices=["voxport", "transformers"],
        default="voxport",
        help="voxport's static-cache generation loop (default), or transformers' generate() "
        "for comparison (one chunk of text; no --stream, --batch-file or --min-tokens)",
    )
    parser.add_argument(
        "--speaker", type=non_negative_int, help="speaker id of the new speech (default: the model's, 0 for CSM)"
    )
    parser.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="SPK:TEXT:AUDIO",
        type=_context_turn,
        help="an earlier turn whose voice to continue: speaker id, its words and its audio file; "
        "repeat for several turns, oldest first",
    )
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        help="most generation steps (audio frames, 80 ms each for CSM) for each chunk of text "
        "(default: enough for slow speech of the chunk's words, 2 s + 0.12 s a character)",
    )
    parser.add_argument(
        "--min-tokens",
        type=non_negative_int,
        default=0,
        help="steps each chunk makes before the model may end the speech (default: 0)",
    )
    add_sampling_options(parser, "code")
    parser.add_argument(
        "--seed",
        type=int,
        help="seed for sampling; the same seed gives the same audio, alone or "
        "in a batch (every --batch-file line uses it)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="capture the per-frame step as a CUDA graph (torch.compile) on CUDA; other devices run eagerly and say so",
    )
    parser.add_argument(
        "--codes-out",
        type=Path,
        metavar="CODES.npy",
        help="also save the audio codes, int64 [frames, codebooks], as a .npy file; with --batch-file "
        "a directory for 0000.npy, 0001.npy, ...",
    )
    parser.add_argument(
        "--ssml",
        action="store_true",
        help="read the text as SSML (<break>, <say-as>, <sub>, <p>, <s>; docs/text.md) even without "
        "a <speak> root; text starting with <speak> is SSML anyway",
    )
    parser.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="give the model the text as written: numbers, dates, money, ... are not read out",
    )
    parser.add_argument(
        "--timestamps",
        type=Path,
        metavar="WORDS.json",
        help="also write when each chunk and each word of the text is heard (seconds, and offsets "
        "into the text as given), timed by a forced aligner (see --aligner)",
    )
    parser.add_argument(
        "--aligner",
        metavar="SOURCE",
        help="the forced aligner for --timestamps: local directory or hub id (default: MMS-300M, see docs/text.md)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    add_device_options(parser)
    parser.set_defaults(run=run)


@dataclass
class TtsReport:
    """What `voxport tts --json` prints: the same keys in every mode (None where a mode has no value)."""

    output: str | None  # the audio file (one text), or None with --batch-file
    outputs: list[str] | None  # with --batch-file: one file per line
    codes_out: str | None
    batch: int  # outputs made together
    sample_rate: int
    frames: int  # generation steps, all outputs together
    frames_per_output: list[int]
    chunks: int  # chunks of text spoken, all outputs together
    audio_seconds: float
    generation_seconds: float  # model steps (prefill and frames), device synchronized; wall clock when streamed
    prompt_seconds: float | None
    decode_seconds: float | None
    rtf: float | None
    time_to_first_audio_seconds: float | None  # the output's first audio written (one text)
    seed: int
    load_seconds: float = 0.0
    device: str = ""
    device_name: str = ""
    dtype: str = ""
    engine: str = "voxport"
    compiled: bool = False
    peak_memory: dict[str, Any] = field(default_factory=dict)
    bandwidth_bytes_per_second: float | None = None
    bandwidth_source: str | None = None
    bandwidth_probes_bytes_per_second: list[float] = field(default_factory=list)
    bytes_read_per_step: int | None = None
    bytes_read: int | None = None
    bound_fraction: float | None = None


def run(args: argparse.Namespace) -> int:
    from voxport.audio.io import check_readable, check_writable
    from voxport.models.base import SpeaksText
    from voxport.models.registry import load_model
    from voxport.runtime.bandwidth import memory_bandwidth
    from voxport.runtime.devices import backend_for, dtype_name, resolve_device, resolve_dtype
    from voxport.services.speech import SpeechService

    texts = _texts(args)
    _check_mode(args)
    if args.batch_file is None:
        check_writable(args.output)
        if args.codes_out is not None:
            check_output_path(args.codes_out)
        if args.timestamps is not None:
            check_output_path(args.timestamps)
    else:
        check_output_dir(args.output_dir, "--output-dir")
        if args.codes_out is not None:
            check_output_dir(args.codes_out, "--codes-out")
    for turn in args.context:
        check_readable(turn.audio)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    backend = backend_for(device)
    quiet_library_progress()

    model = load_model(args.model, device, dtype, capability="speaks_text")
    service = SpeechService(cast(SpeaksText, model), aligner=args.aligner)
    voice = tuple(service.sample(turn.audio, turn.text, turn.speaker) for turn in args.context)
    plans = [service.plan(_request(args, text, voice)) for text in texts]
    if args.compile:
        reason = backend.compile_unsupported_reason()
        if reason:
            print(f"voxport: --compile ignored: {reason}", file=sys.stderr)
        else:
            model.compile()
    bandwidth = memory_bandwidth(device, fresh=True)  # probed again after the run: see _bandwidth_bound
    backend.reset_peak_memory(device)
    if args.batch_file is not None:
        report = _speak_batch(service, plans, args.output_dir, args.codes_out)
    elif args.stream or len(plans[0].chunks) > 1:
        report = _speak_as_made(service, plans[0], args.output, args.codes_out, args.timestamps, streamed=args.stream)
    else:
        report = _speak(service, plans[0], args.output, args.codes_out, args.timestamps)
    peak = backend.peak_memory(device)
    report.load_seconds, report.device, report.device_name = (
        model.load_seconds,
        str(device),
        backend.device_name(device),
    )
    report.dtype, report.engine = dtype_name(dtype), args.engine
    report.compiled = bool(args.compile and not backend.compile_unsupported_reason())
    report.peak_memory = {
        "allocated_bytes": peak.allocated_bytes,
        "reserved_bytes": peak.reserved_bytes,
        "source": peak.source,
    }
    _bandwidth_bound(model, report, device, bandwidth)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(_summary(report))
    if report.frames == 0:
        print("voxport: the model ended the speech at once; --min-tokens N forces N frames", file=sys.stderr)
    return 0


def _request(args: argparse.Namespace, text: str, voice: tuple) -> Any:
    from voxport.runtime.seeding import fresh_seed
    from voxport.services.speech import SpeechRequest

    # One seed for every text of the run, drawn here so that it is reported whatever the mode.
    if args.seed is None:
        args.seed = fresh_seed()
    return SpeechRequest(
        text=text,
        speaker=args.speaker,
        voice=voice,
        seed=args.seed,
        temperature=args.temperature,
        top_k=args.top_k,
        greedy=args.greedy,
        max_steps=args.max_tokens,
        min_steps=args.min_tokens,
        reference_engine=args.engine == "transformers",
        normalize=args.normalize,
        ssml=True if args.ssml else None,
        timestamps=args.timestamps is not None,
    )


def _texts(args: argparse.Namespace) -> list[str]:
    from voxport.errors import InputError

    if sum(source is not None for source in (args.text, args.input_file, args.batch_file)) != 1:
        raise InputError(
            "give the text to speak, --input-file with a text, or --batch-file with one text a line (one of them)"
        )
    if args.batch_file is not None:
        texts = [line.strip() for line in _read_text(args.batch_file, "--batch-file").splitlines() if line.strip()]
        return texts
    return [args.text if args.input_file is None else _read_text(args.input_file, "--input-file")]


def _read_text(path: Path, option: str) -> str:
    from voxport.errors import InputError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {option} {path}: {error}") from None
    if not text.strip():
        raise InputError(f"{option} {path} has no text: expected words to speak")
    return text


def _check_mode(args: argparse.Namespace) -> None:
    from voxport.errors import InputError

    if args.engine == "transformers" and (args.stream or args.batch_file or args.min_tokens or args.compile):
        raise InputError(
            "--engine transformers does not stream, batch, compile or take --min-tokens: use the voxport engine"
        )
    if args.stream and args.batch_file:
        raise InputError("--stream speaks one text: drop --batch-file or --stream")
    if args.timestamps and args.batch_file:
        raise InputError(
            "--timestamps times one text: drop --batch-file (voxport batch tts --timestamps times every row)"
        )


def _speak(service, plan, output: Path, codes_out: Path | None, timestamps: Path | None) -> TtsReport:
    from voxport.audio.io import write_audio
    from voxport.services.speech import timestamps_record

    with progress_bar(sum(plan.max_steps), "frames", "generating") as progress:
        result = service.speak_plans([plan], on_step=progress)[0]
    write_audio(output, result.audio, result.sample_rate)
    if codes_out is not None and result.codes is not None:
        _write_codes(codes_out, result.codes)
    if timestamps is not None:
        _write_json(timestamps, timestamps_record(plan, result.chunk_times, result.words))
    return _report(result, [result], output=str(output), codes_out=codes_out)


def _speak_as_made(
    service, plan, output: Path, codes_out: Path | None, timestamps: Path | None, streamed: bool
) -> TtsReport:
    """One text written while it is made, to OUTPUT.partial.wav (playable so far), which replaces the output
    only when the speech is complete; a failed or interrupted run leaves the output as it was."""
    import time

    import soundfile as sf

    from voxport.runtime.files import growing_file
    from voxport.services.speech import timestamps_record

    start = time.perf_counter()
    first_audio, pieces, made = None, [], []
    with (
        progress_bar(len(plan.chunks), "chunks", "speaking") as progress,
        growing_file(output) as partial,
        sf.SoundFile(partial, "w", samplerate=service.sample_rate, channels=1, subtype="PCM_16") as sink,
    ):
        for piece in service.pieces(plan, streamed=streamed):
            first_audio = time.perf_counter() - start if first_audio is None else first_audio
            sink.write(np.clip(piece.spoken.audio, -1.0, 1.0))
            sink.flush()  # the header now tells players how much there is
            pieces.append(piece.spoken)
            made.append(piece)
            progress(piece.chunk)
    seconds = time.perf_counter() - start
    if timestamps is not None:
        _write_json(timestamps, timestamps_record(plan, *service.times(plan, made)))
    codes = [piece.codes for piece in pieces if piece.codes is not None]
    if codes_out is not None and codes:
        _write_codes(codes_out, np.concatenate(codes))
    audio_seconds = sum(piece.audio_seconds for piece in pieces)
    frames = sum(piece.output_tokens for piece in pieces)
    return TtsReport(
        output=str(output),
        outputs=None,
        codes_out=_name(codes_out),
        batch=1,
        sample_rate=service.sample_rate,
        frames=frames,
        frames_per_output=[frames],
        chunks=len(plan.chunks),
        audio_seconds=audio_seconds,
        generation_seconds=seconds,
        prompt_seconds=None,
        decode_seconds=None,
        rtf=seconds / audio_seconds if audio_seconds else None,
        time_to_first_audio_seconds=first_audio,
        seed=plan.seed,
    )


def _speak_batch(service, plans: list, directory: Path, codes_directory: Path | None) -> TtsReport:
    from voxport.audio.io import write_audio

    with progress_bar(max(sum(plan.max_steps) for plan in plans), "frames", "generating") as progress:
        results = service.speak_plans(plans, on_step=progress)
    directory.mkdir(parents=True, exist_ok=True)
    outputs = [
        str(write_audio(directory / f"{index:04d}.wav", result.audio, result.sample_rate))
        for index, result in enumerate(results)
    ]
    if codes_directory is not None:
        codes_directory.mkdir(parents=True, exist_ok=True)
        for index, result in enumerate(results):
            if result.codes is not None:
                _write_codes(codes_directory / f"{index:04d}.npy", result.codes)
    return _report(results[0], results, outputs=outputs, codes_out=codes_directory)


def _report(
    first, results: list, output: str | None = None, outputs: list[str] | None = None, codes_out: Path | None = None
) -> TtsReport:
    """The report of results made together (one batch: the timings are shared)."""
    audio_seconds = sum(result.audio_seconds for result in results)
    return TtsReport(
        output=output,
        outputs=outputs,
        codes_out=_name(codes_out),
        batch=len(results),
        sample_rate=first.sample_rate,
        frames=sum(result.steps for result in results),
        frames_per_output=[result.steps for result in results],
        chunks=sum(result.chunks for result in results),
        audio_seconds=audio_seconds,
        generation_seconds=first.timings.get("generation_seconds", first.compute_seconds),
        prompt_seconds=first.timings.get("prompt_seconds"),
        decode_seconds=first.timings.get("decode_seconds"),
        rtf=first.compute_seconds / audio_seconds if audio_seconds else None,
        time_to_first_audio_seconds=None,
        seed=first.seed,
    )


def _name(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _write_codes(path: Path, codes: np.ndarray) -> None:
    from voxport.runtime.files import replaced_atomically

    with replaced_atomically(path) as temporary, open(temporary, "wb") as stream:
        np.save(stream, codes)


def _write_json(path: Path, record: dict) -> None:
    from voxport.runtime.files import replaced_atomically

    with replaced_atomically(path) as temporary:
        temporary.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _bandwidth_bound(model, report: TtsReport, device, before) -> None:
    """How close generation came to the memory-bandwidth bound: the weight bytes the run read (each chunk's
    prefill reads the weights once, every step all of them, whatever the batch) over the bandwidth (the faster
    of probes just before and just after the run where no published figure applies: a shared machine's
    bandwidth drifts, and one probe at a slow moment would flatter the run), against the measured seconds
    (docs/performance.md explains the figures)."""
    from voxport.runtime.bandwidth import faster_of_another_probe
    from voxport.validate.performance import bound_fraction

    bandwidth = faster_of_another_probe(device, before)
    step_bytes = model.weight_bytes_per_step()
    bytes_read = max(report.frames_per_output) * step_bytes + report.chunks * model.weight_bytes_per_prompt()
    report.bandwidth_bytes_per_second, report.bandwidth_source = bandwidth.bytes_per_second, bandwidth.source
    report.bandwidth_probes_bytes_per_second = list(bandwidth.probes)
    report.bytes_read_per_step, report.bytes_read = step_bytes, bytes_read
    report.bound_fraction = bound_fraction(1, report.generation_seconds, bytes_read, bandwidth.bytes_per_second)


def _summary(report: TtsReport) -> str:
    where = report.output or f"{len(report.outputs or [])} files in {Path((report.outputs or ['.'])[0]).parent}"
    rtf = "n/a" if report.rtf is None else f"{report.rtf:.3f}"
    first = report.time_to_first_audio_seconds
    chunks = f" in {report.chunks} chunks" if report.chunks > len(report.frames_per_output) else ""
    return (
        f"wrote {where}: {report.audio_seconds:.2f} s of audio ({report.frames} frames{chunks}) in "
        f"{report.generation_seconds:.2f} s of generation; RTF {rtf}"
        + (f"; first audio after {first * 1000:.0f} ms" if first is not None else "")
        + f" on {report.device} ({report.device_name}, {report.dtype}, {report.engine} engine)"
        + (
            ""
            if report.bound_fraction is None
            else f"; {report.bound_fraction:.2f} of the memory-bandwidth bound" + _probes(report)
        )
        + "; "
        f"peak memory {report.peak_memory['allocated_bytes'] / 2**30:.2f} GiB "
        f"({report.peak_memory['source']}); seed {report.seed}"
    )


def _probes(report: TtsReport) -> str:
    from voxport.runtime.bandwidth import probes_text

    probes = report.bandwidth_probes_bytes_per_second
    return f" (probed {probes_text(probes)})" if probes else ""


@dataclass(frozen=True)
class ContextTurn:
    """An earlier turn whose voice to continue, as the command line gives it."""

    speaker: int
    text: str
    audio: str


def _context_turn(text: str) -> ContextTurn:
    """SPK:TEXT:AUDIO; the words may contain colons, so the audio path is what follows the last one."""
    speaker, _, rest = text.partition(":")
    words, _, audio = rest.rpartition(":")
    if not speaker.isdigit() or not words.strip() or not audio:
        raise argparse.ArgumentTypeError(f"expected SPK:TEXT:AUDIO such as 0:Hello there.:hello.wav, got {text!r}")
    return ContextTurn(speaker=int(speaker), text=words, audio=audio)
