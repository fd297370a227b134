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
    from voxport.runtime.files import check_output_path, replaced_atomically

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
