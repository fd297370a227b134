"""voxport chat: Tencent Covo-Audio-Chat, speech in, text (and speech) out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from voxport.cli.common import (
    add_device_options,
    non_negative_int,
    positive_int,
    progress_bar,
    quiet_library_progress,
    sampling_options,
    temperature,
)
from voxport.runtime.files import check_output_dir

DEFAULT_COVO = "tencent/Covo-Audio-Chat"


def add_parser(commands) -> None:
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
    parser.add_argument("--max-new-tokens", type=positive_int, default=2048,
                        help="most tokens a round may generate (default: 2048)")
    parser.add_argument("--temperature", type=temperature, default=0.5,
                        help="sampling temperature after round 0; 0 is greedy, as --greedy (default: 0.5)")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass after round 0 (default: 0.9)")
    parser.add_argument("--top-k", type=non_negative_int, default=50, help="sample among the K best after round 0 (default: 50)")
    parser.add_argument("--system", metavar="TEXT",
                        help="a system prompt replacing the reference's persona (its output-format line stays: "
                             "the model was trained to follow it); default: the reference's")
    parser.add_argument("--seed", type=int, help="seed for the sampled rounds; the same seed gives the same replies")
    parser.add_argument("--greedy", action="store_true", help="greedy in every round, not only round 0")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the transcript")
    add_device_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from voxport.models.covo import ChatSettings, CovoAudioChat
    from voxport.models.covo.frontend import prepare_clip
    from voxport.runtime.devices import backend_for, dtype_name, resolve_device, resolve_dtype

    settings = ChatSettings(mode=args.mode, max_new_tokens=args.max_new_tokens, top_p=args.top_p, top_k=args.top_k,
                            seed=args.seed, persona=args.system, **sampling_options(args))
    clips = [prepare_clip(path) for path in args.audio]
    speaking = args.mode == "a2ta"
    if speaking:
        check_output_dir(args.output_dir, "--output-dir")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    quiet_library_progress()

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
        with progress_bar(settings.max_new_tokens, "tokens", f"round {len(conversation.rounds)}") as update:
            turn = conversation.say(clip, on_token=lambda ids: update(len(ids)))
        report = {**turn.to_json(), "audio": clip.source}
        if speaking:
            report.update(save_spoken_reply(turn, args.output_dir, model.speech_decoder().sample_rate))
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


def save_spoken_reply(turn, directory: Path, sample_rate: int) -> dict:
    """Write turn_N.wav when the round produced speech; say so on stderr when it did not."""
    from voxport.audio.io import write_audio

    if turn.speech is None:
        print(f"voxport: round {turn.index} has no audio codes in its reply, so no turn_{turn.index}.wav was "
              f"written (raise --max-new-tokens if the reply was cut short)", file=sys.stderr)
        return {"wav": None, "audio_seconds": 0.0}
    path = write_audio(directory / f"turn_{turn.index}.wav", turn.speech, sample_rate)
    return {"wav": str(path), "audio_seconds": len(turn.speech) / sample_rate}
