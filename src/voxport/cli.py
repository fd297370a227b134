"""The `voxport` command: parse, call one function, print, exit.

Exit codes: 0 done, 1 a user error (one line on stderr, no traceback), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from voxport import __version__
from voxport.errors import InputError, VoxportError
from voxport.runtime.files import check_output_path

DEFAULT_CSM = "sesame/csm-1b"
DEFAULT_COVO = "tencent/Covo-Audio-Chat"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except VoxportError as error:
        print(f"voxport: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("voxport: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxport",
        description="Run speech foundation models on any PyTorch device (CUDA, Ascend NPU, MPS, XPU, CPU).",
    )
    parser.add_argument("--version", action="version", version=f"voxport {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _add_tts(commands)
    _add_chat(commands)
    _add_validation(commands)
    _add_make_tiny(commands)
    return parser


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (best accelerator here), cpu, cuda[:N], npu[:N], mps or xpu[:N] (default: auto)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights and activations; auto = bfloat16 on accelerators, float32 on CPU")


def _add_tts(commands) -> None:
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
    parser.add_argument("--speaker", type=_non_negative_int, default=0, help="speaker id of the new speech (default: 0)")
    parser.add_argument("--context", action="append", default=[], metavar="SPK:TEXT:AUDIO", type=_context_turn,
                        help="an earlier turn whose voice to continue: speaker id, its words and its audio file; "
                             "repeat for several turns, oldest first")
    parser.add_argument("--max-tokens", type=_positive_int, default=125,
                        help="most audio frames to generate, 80 ms each (default: 125 = 10 s)")
    parser.add_argument("--min-tokens", type=_non_negative_int, default=0,
                        help="frames to generate before the model may end the speech (default: 0)")
    parser.add_argument("--temperature", type=float, default=0.9, help="sampling temperature (default: 0.9)")
    parser.add_argument("--top-k", type=_non_negative_int, default=50, help="sample among the K best ids (default: 50)")
    parser.add_argument("--seed", type=int, help="seed for sampling; the same seed gives the same audio")
    parser.add_argument("--greedy", action="store_true", help="always pick the most likely id (no sampling)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model where the device supports it")
    parser.add_argument("--codes-out", type=Path, metavar="CODES.npy",
                        help="also save the audio codes, int64 [frames, 32], as a .npy file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    _add_device_options(parser)
    parser.set_defaults(run=_run_tts)


def _add_chat(commands) -> None:
    parser = commands.add_parser(
        "chat", help="talk to Tencent Covo-Audio-Chat: speech in, text out",
        description="Multi-round speech chat with Covo-Audio-Chat. Each --audio is one user turn; the model's "
                    "memory of earlier rounds is kept (its KV cache), so a round only processes its own audio. "
                    "Round 0 is greedy with the reference's repetition penalties; later rounds sample with "
                    "--temperature/--top-p/--top-k unless --greedy.",
        epilog="example: voxport chat --audio question.wav --audio follow-up.wav --device npu:0",
    )
    parser.add_argument("--model", default=DEFAULT_COVO,
                        help=f"local checkpoint directory or hub id (default: {DEFAULT_COVO})")
    parser.add_argument("--audio", action="append", required=True, type=Path, metavar="FILE",
                        help="one user turn (wav, flac, ogg, ...; any rate, mono or stereo); repeat for more rounds")
    parser.add_argument("--mode", default="a2t", choices=["a2t", "a2ta"],
                        help="a2t: reply in text, stop at <|endoftext|>; a2ta: reply in text and speech, stop at "
                             "<|im_end|>, one turn_N.wav per round in --output-dir (default: a2t)")
    parser.add_argument("--output-dir", type=Path, default=Path("chat-audio"),
                        help="a2ta: where the spoken replies go, created if missing (default: chat-audio)")
    parser.add_argument("--prompt-dir", type=Path,
                        help="a2ta: the voice (prompt_token.npy, prompt_latent.npy, speaker_embed.npy); "
                             "default: <model>/token2wav/prompt")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=2048,
                        help="most tokens a round may generate (default: 2048)")
    parser.add_argument("--temperature", type=float, default=0.5, help="sampling temperature after round 0 (default: 0.5)")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass after round 0 (default: 0.9)")
    parser.add_argument("--top-k", type=_non_negative_int, default=50, help="sample among the K best after round 0 (default: 50)")
    parser.add_argument("--seed", type=int, help="seed for the sampled rounds; the same seed gives the same replies")
    parser.add_argument("--greedy", action="store_true", help="greedy in every round, not only round 0")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the transcript")
    _add_device_options(parser)
    parser.set_defaults(run=_run_chat)


def _add_validation(commands) -> None:
    from voxport.validate.performance import DEFAULT_CONFIGS

    def command(name, help_text, description, run):
        parser = commands.add_parser(name, help=help_text, description=description)
        parser.add_argument("--model", required=True, help="local checkpoint directory or hub id (CSM or Covo-Audio)")
        _add_device_options(parser)
        parser.set_defaults(run=run)
        return parser

    accuracy = command("accuracy", "compare a device/dtype with the CPU float32 reference",
                       "Run the model's fixed example on the CPU in float32 (the reference) and on --device/--dtype; "
                       "compare every output (cosine, max/mean abs, relative L2 error, share within 0.1%, top-1) "
                       "and every block, naming the first block that drifts. Verdicts per dtype: see the README.",
                       _run_accuracy)
    accuracy.add_argument("--reference-model", help="checkpoint for the reference (default: --model)")
    accuracy.add_argument("--json-out", type=Path, help="also write the result as JSON")

    repro = command("repro", "greedy generation twice, and against the CPU reference",
                    "Greedy generation twice on the device (token match rate, first divergence, identical audio), "
                    "then how long it keeps to the CPU float32 reference's tokens (until one leaves the top-k).",
                    _run_repro)
    repro.add_argument("--steps", type=_positive_int, default=16, help="generation steps (default: 16)")
    repro.add_argument("--top-k", type=_positive_int, default=5, help="top-k for agreement (default: 5)")
    repro.add_argument("--json-out", type=Path, help="also write the result as JSON")

    bench = command("bench", "latency, real-time factor, throughput and memory per configuration",
                    "Fixed-length generation (end of audio ignored) per config: load time, latency mean/p50/p90, "
                    "RTF and its inverse, steps per second, peak device memory and process RSS, and the "
                    "memory-bandwidth bound (weight bytes per step / bandwidth).", _run_bench)
    bench.add_argument("--configs", default=DEFAULT_CONFIGS,
                       help=f"comma-separated short|medium|long_<steps>t (default: {DEFAULT_CONFIGS})")
    bench.add_argument("--iterations", type=_positive_int, default=3, help="timed runs per config (default: 3)")
    bench.add_argument("--bandwidth-gbs", type=float, help="device memory bandwidth in GB/s (default: known table)")
    bench.add_argument("--json-out", type=Path, help="also write the result as JSON")

    ops = command("ops", "which aten ops the model uses and whether a device has them",
                  "Trace every aten op (with dtypes) of one forward and a short generation on --device; report for "
                  "--target whether each has a kernel (when that backend is installed) and which known gaps it hits, "
                  "with the fix voxport applies.", _run_ops)
    ops.add_argument("--target", choices=["npu", "cuda", "mps", "xpu", "cpu"],
                     help="device kind to judge coverage for (default: the kind of --device)")
    ops.add_argument("--check-accuracy", action="store_true",
                     help="replay each op on the target (which must be present) against CPU float32")
    ops.add_argument("--json-out", type=Path, help="also write the result as JSON")

    run_all = command("run-all", "accuracy, repro, bench and ops, with a report",
                      "Run accuracy, reproducibility, performance and ops; write accuracy.json, "
                      "reproducibility.json, performance.json, ops.json, PNG plots and summary.md into --out.",
                      _run_run_all)
    run_all.add_argument("--out", type=Path, required=True, help="directory for the results")
    run_all.add_argument("--configs", default="short_32t,medium_64t", help="benchmark configs (default: short_32t,medium_64t)")
    run_all.add_argument("--iterations", type=_positive_int, default=3, help="timed runs per config (default: 3)")
    run_all.add_argument("--steps", type=_positive_int, default=16, help="reproducibility steps (default: 16)")


def _add_make_tiny(commands) -> None:
    from voxport.models.registry import FAMILIES

    parser = commands.add_parser(
        "make-tiny", help="write a tiny random checkpoint for tests and demos",
        description="Write a tiny random checkpoint in the model's real on-disk layout (config, safetensors, "
                    "tokenizer, processor), built offline. Its speech is noise; every code path is real.",
        epilog="example: voxport make-tiny csm ./tiny-csm && voxport tts 'Hi.' --model ./tiny-csm",
    )
    parser.add_argument("family", choices=sorted(FAMILIES), help="model family")
    parser.add_argument("directory", type=Path, help="where to write the checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    parser.add_argument("--force", action="store_true", help="replace the directory if it is not empty")
    parser.set_defaults(run=_run_make_tiny)


def _run_tts(args: argparse.Namespace) -> int:
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
    _quiet_library_progress()

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


def _run_chat(args: argparse.Namespace) -> int:
    from voxport.models.covo import ChatSettings, CovoAudioChat
    from voxport.models.covo.frontend import prepare_clip
    from voxport.runtime.devices import backend_for, dtype_name, resolve_device, resolve_dtype

    settings = ChatSettings(mode=args.mode, max_new_tokens=args.max_new_tokens, greedy=args.greedy,
                            temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed)
    clips = [prepare_clip(path) for path in args.audio]
    speaking = args.mode == "a2ta"
    if speaking and args.output_dir.exists() and not args.output_dir.is_dir():
        raise InputError(f"--output-dir {args.output_dir} is a file: expected a directory")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    _quiet_library_progress()

    model = CovoAudioChat.load(args.model, device, dtype)
    if speaking:
        model.load_speech_decoder(args.prompt_dir)
        args.output_dir.mkdir(parents=True, exist_ok=True)
    conversation = model.chat(settings)
    if not args.json:
        print(f"model init {model.init_seconds:.2f} s, weight load {model.load_seconds:.2f} s"
              + (f", token2wav load {model.speech_load_seconds:.2f} s" if speaking else "")
              + f" on {device} ({backend_for(device).device_name(device)}, {dtype_name(dtype)}); seed {conversation.seed}")
    rounds = []
    for clip in clips:
        turn = conversation.say(clip)
        report = {**turn.to_json(), "audio": clip.source}
        if speaking:
            report.update(_save_spoken_reply(turn, args.output_dir, model.speech_decoder().sample_rate))
        rounds.append(report)
        if not args.json:
            print(f"round {turn.index} [{clip.source}, {clip.seconds:.1f} s, {turn.audio_features} features; "
                  f"{turn.generation_seconds:.2f} s, {len(turn.text_token_ids)} text tokens, "
                  f"{len(turn.audio_codes)} audio codes]: {turn.text}")
            if report.get("wav"):
                print(f"  spoken reply: {report['wav']} ({report['audio_seconds']:.2f} s, "
                      f"decoded in {turn.decode_seconds:.2f} s)")
    if args.json:
        print(json.dumps({
            "model": str(args.model), "mode": args.mode, "device": str(device), "dtype": dtype_name(dtype),
            "seed": conversation.seed, "init_seconds": model.init_seconds, "load_seconds": model.load_seconds,
            "speech_load_seconds": model.speech_load_seconds, "rounds": rounds,
        }, ensure_ascii=False))
    return 0


def _save_spoken_reply(turn, directory: Path, sample_rate: int) -> dict:
    """Write turn_N.wav when the round produced speech; say so on stderr when it did not."""
    from voxport.audio.io import write_audio

    if turn.speech is None:
        print(f"voxport: round {turn.index} has no audio codes in its reply, so no turn_{turn.index}.wav was "
              f"written (raise --max-new-tokens if the reply was cut short)", file=sys.stderr)
        return {"wav": None, "audio_seconds": 0.0}
    path = write_audio(directory / f"turn_{turn.index}.wav", turn.speech, sample_rate)
    return {"wav": str(path), "audio_seconds": len(turn.speech) / sample_rate}


def _validation_target(args: argparse.Namespace):
    """Device and dtype, after checking the model is one voxport can handle (a fast, clear failure)."""
    from voxport.models.registry import family_of
    from voxport.runtime.devices import resolve_device, resolve_dtype

    family_of(args.model)
    device = resolve_device(args.device)
    _quiet_library_progress()
    return device, resolve_dtype(args.dtype, device)


def _report(result: dict, tables, json_out: Path | None) -> int:
    from voxport.validate.report import write_json

    if json_out is not None:
        check_output_path(json_out)
        write_json(json_out, result)
    print("\n".join(tables(result)))
    return 0


def _progress(message: str) -> None:
    print(f"voxport: {message}", file=sys.stderr, flush=True)


def _run_accuracy(args: argparse.Namespace) -> int:
    from voxport.validate.accuracy import run_accuracy
    from voxport.validate.report import accuracy_tables

    if args.reference_model:
        from voxport.models.registry import family_of

        family_of(args.reference_model)
    device, dtype = _validation_target(args)
    result = run_accuracy(args.model, device, dtype, args.reference_model, progress=_progress)
    return _report(result, accuracy_tables, args.json_out)


def _run_repro(args: argparse.Namespace) -> int:
    from voxport.validate.report import reproducibility_table
    from voxport.validate.reproducibility import run_reproducibility

    device, dtype = _validation_target(args)
    result = run_reproducibility(args.model, device, dtype, args.steps, args.top_k, progress=_progress)
    return _report(result, reproducibility_table, args.json_out)


def _run_bench(args: argparse.Namespace) -> int:
    from voxport.validate.performance import parse_configs, run_benchmark
    from voxport.validate.report import performance_table

    configs = parse_configs(args.configs)
    device, dtype = _validation_target(args)
    bandwidth = args.bandwidth_gbs * 1e9 if args.bandwidth_gbs else None
    result = run_benchmark(args.model, device, dtype, configs, args.iterations, bandwidth, progress=_progress)
    return _report(result, performance_table, args.json_out)


def _run_ops(args: argparse.Namespace) -> int:
    import torch

    from voxport.runtime.devices import resolve_device
    from voxport.validate.ops import run_ops
    from voxport.validate.report import ops_table

    device, dtype = _validation_target(args)
    target = args.target or device.type
    if args.dtype == "auto" and target != "cpu":
        dtype = torch.bfloat16  # trace in the dtype the target would run
    replay = resolve_device(target) if args.check_accuracy else None
    result = run_ops(args.model, device, dtype, target, replay_device=replay, progress=_progress)
    return _report(result, ops_table, args.json_out)


def _run_run_all(args: argparse.Namespace) -> int:
    from voxport.validate.performance import parse_configs
    from voxport.validate.pipeline import run_all

    configs = parse_configs(args.configs)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file: expected a directory")
    device, dtype = _validation_target(args)
    summary = run_all(args.model, device, dtype, args.out, configs, args.iterations, args.steps, progress=_progress)
    print(f"wrote {summary} (with accuracy.json, reproducibility.json, performance.json, ops.json and plots)")
    return 0


def _run_make_tiny(args: argparse.Namespace) -> int:
    from voxport.models.registry import FAMILIES
    from voxport.models.tiny import write_tiny_checkpoint

    _quiet_library_progress()
    family = FAMILIES[args.family]
    directory = write_tiny_checkpoint(family.make_tiny, args.directory, seed=args.seed, overwrite=args.force)
    print(f"wrote a tiny random {family.description} checkpoint to {directory}")
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


def _quiet_library_progress() -> None:
    """transformers' own loading bars only when stderr is a terminal; logs stay quiet either way."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    if not sys.stderr.isatty():
        logging.disable_progress_bar()


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _context_turn(text: str):
    """SPK:TEXT:AUDIO; the words may contain colons, so the audio path is what follows the last one."""
    from voxport.models.csm import ContextTurn

    speaker, _, rest = text.partition(":")
    words, _, audio = rest.rpartition(":")
    if not speaker.isdigit() or not words.strip() or not audio:
        raise argparse.ArgumentTypeError(f"expected SPK:TEXT:AUDIO such as 0:Hello there.:hello.wav, got {text!r}")
    return ContextTurn(speaker=int(speaker), text=words, audio=audio)
