"""voxport chat: speech in, text (and speech) out (Tencent Covo-Audio-Chat by default), through the chat
service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from voxport.audio.io import check_readable, write_audio
from voxport.cli.common import (
    add_device_options,
    add_sampling_options,
    positive_int,
    progress_bar,
    quiet_library_progress,
)
from voxport.errors import InputError
from voxport.models.registry import default_source
from voxport.runtime.files import check_output_dir


class ChatRoundReport(BaseModel):
    """One round of `voxport chat --json`: the model's ChatRound (models.base) without the waveform, the user's
    clip, and in a2ta mode the spoken reply's file."""

    model_config = ConfigDict(extra="allow")  # a field ChatRound gains is reported as it is

    index: int
    text: str
    text_token_ids: list[int]
    audio_codes: list[int] = Field(description="speech codes of a spoken reply")
    reply_ids: list[int] = Field(description="what the model's cache holds of the reply (text and speech ids)")
    audio_features: int = Field(description="encoder features the user's clip filled")
    generation_seconds: float = Field(description="front end, encoder and language model, device synchronized")
    prefill_positions: int
    cache_positions_before: int
    stopped: bool = Field(description="the stop token ended the round (else --max-new-tokens did)")
    decode_seconds: float | None = Field(description="a2ta: speech synthesis time, device synchronized")
    audio: str = Field(description="the user's clip")
    wav: str | None = Field(
        default=None, description="a2ta only: turn_N.wav, or null where the reply had no speech codes"
    )
    audio_seconds: float | None = Field(default=None, description="a2ta only: length of the spoken reply")


class ChatReport(BaseModel):
    """What `voxport chat --json` prints."""

    model_config = ConfigDict(extra="allow")

    model: str
    mode: str
    device: str
    dtype: str
    seed: int
    load_seconds: float
    load_timings: dict[str, float] = Field(description="seconds of each load phase the model times")
    init_seconds: float | None
    speech_load_seconds: float | None = Field(description="loading token2wav, where it was loaded")
    rounds: list[ChatRoundReport]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "chat",
        help="talk to a model that answers speech (Tencent Covo-Audio-Chat by default)",
        description="Multi-round speech chat. Each --audio is one user turn; the model's memory of earlier rounds "
        "is kept (its KV cache), so a round only processes its own audio. Covo-Audio-Chat's round 0 "
        "is greedy with the reference's repetition penalties; later rounds sample with "
        "--temperature/--top-p/--top-k unless --greedy.",
        epilog="example: voxport chat --audio question.wav --audio follow-up.wav --device npu:0",
    )
    parser.add_argument(
        "--model",
        default=default_source("answers_audio"),
        help="local checkpoint directory or hub id (default: %(default)s)",
    )
    parser.add_argument(
        "--audio",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="one user turn (wav, flac, ogg, ...; any rate, mono or stereo); repeat for more rounds",
    )
    parser.add_argument(
        "--mode",
        default="a2t",
        choices=["a2t", "a2ta"],
        help="a2t: reply in text, stop at <|endoftext|>; a2ta: reply in text and speech, stop at "
        "<|im_end|>, one turn_N.wav per round in --output-dir (default: a2t)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("chat-audio"),
        help="a2ta: where the spoken replies go, created if missing (default: chat-audio)",
    )
    parser.add_argument(
        "--prompt-dir",
        type=Path,
        help="a2ta: the voice (prompt_token.npy, prompt_latent.npy, speaker_embed.npy); "
        "default: <model>/token2wav/prompt",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        help="most tokens a round may generate (default: the model's, 2048 for Covo-Audio-Chat)",
    )
    add_sampling_options(parser, "token")
    parser.add_argument("--top-p", type=float, help="nucleus sampling mass (default: the model's)")
    parser.add_argument(
        "--system",
        metavar="TEXT",
        help="a system prompt replacing the reference's persona (its output-format line stays: "
        "the model was trained to follow it); default: the reference's",
    )
    parser.add_argument("--seed", type=int, help="seed for the sampled rounds; the same seed gives the same replies")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the transcript")
    add_device_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from voxport.models.base import ChatSettings
    from voxport.runtime.devices import backend_for, dtype_name, resolve_device, resolve_dtype
    from voxport.services.chat import ChatService
    from voxport.validate.reports import report_json

    settings = ChatSettings(
        mode=args.mode,
        max_new_tokens=args.max_new_tokens,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        persona=args.system,
        temperature=args.temperature,
        greedy=args.greedy,
    )
    for path in args.audio:
        check_readable(path)
    speaking = settings.speaks
    if speaking:
        check_output_dir(args.output_dir, "--output-dir")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    quiet_library_progress()

    service = ChatService.load(args.model, device, dtype)
    model = service.model
    clips = [service.clip(path) for path in args.audio]
    if speaking:
        error = service.prepare_speech(args.prompt_dir)
        if error:
            raise InputError(f"--mode a2ta: {error}")
        args.output_dir.mkdir(parents=True, exist_ok=True)
    conversation = service.open(settings)
    if not args.json:
        print(
            f"model load {model.load_seconds:.2f} s"
            + "".join(f", {name} {seconds:.2f} s" for name, seconds in model.load_timings.items())
            + f" on {device} ({backend_for(device).device_name(device)}, {dtype_name(dtype)}); seed {conversation.seed}"
        )
    rounds: list[ChatRoundReport] = []
    limit = settings.with_defaults(service.defaults).max_new_tokens or 0
    for path, clip in zip(args.audio, clips):
        with progress_bar(limit, "tokens", f"round {len(conversation.rounds)}") as update:
            turn = conversation.say(clip, on_token=lambda ids: update(len(ids)))
        report = ChatRoundReport(
            **turn.to_json(),
            audio=str(path),
            **(save_spoken_reply(turn, args.output_dir, service.speech_rate) if speaking else {}),
        )
        rounds.append(report)
        if not args.json:
            print(
                f"round {turn.index} [{path}, {turn.audio_features} features; "
                f"{turn.generation_seconds:.2f} s, {len(turn.text_token_ids)} text tokens, "
                f"{len(turn.audio_codes)} audio codes]: {turn.text}"
            )
            if report.wav:
                print(
                    f"  spoken reply: {report.wav} ({report.audio_seconds:.2f} s, "
                    f"decoded in {turn.decode_seconds:.2f} s)"
                )
    if args.json:
        print(
            report_json(
                ChatReport(
                    model=str(args.model),
                    mode=args.mode,
                    device=str(device),
                    dtype=dtype_name(dtype),
                    seed=conversation.seed,
                    load_seconds=model.load_seconds,
                    load_timings=model.load_timings,
                    init_seconds=model.load_timings.get("init"),
                    speech_load_seconds=model.load_timings.get("token2wav"),
                    rounds=rounds,
                )
            )
        )
    return 0


def save_spoken_reply(turn, directory: Path, sample_rate: int) -> dict:
    """Write turn_N.wav when the round produced speech; say so on stderr when it did not."""

    if turn.speech is None:
        print(
            f"voxport: round {turn.index} has no audio codes in its reply, so no turn_{turn.index}.wav was "
            f"written (raise --max-new-tokens if the reply was cut short)",
            file=sys.stderr,
        )
        return {"wav": None, "audio_seconds": 0.0}
    path = write_audio(directory / f"turn_{turn.index}.wav", turn.speech, sample_rate)
    return {"wav": str(path), "audio_seconds": len(turn.speech) / sample_rate}
