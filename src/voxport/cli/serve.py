"""voxport serve: the models behind an OpenAI-style HTTP API."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from voxport.cli.common import (
    add_device_options,
    non_negative_int,
    positive_float,
    positive_int,
    progress,
    quiet_library_progress,
)
from voxport.serve.limits import Limits


LIMITS = Limits()

def add_parser(commands) -> None:
    parser = commands.add_parser(
        "serve", help="serve the models over an OpenAI-style HTTP API",
        description="POST /v1/audio/speech (models that speak text, e.g. CSM) and /v1/chat/completions (models "
                    "that answer audio, e.g. Covo-Audio-Chat) in OpenAI's shapes; custom voices at "
                    "/v1/audio/voice_consents and /v1/audio/voices; GET /health, /v1/models and /metrics "
                    "(Prometheus). Binds 127.0.0.1 unless told otherwise.",
        epilog="example: voxport serve --model tts=sesame/csm-1b --model chat=tencent/Covo-Audio-Chat "
               "--voice narrator=voice.wav:'The words in voice.wav' --api-key secret",
    )
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]SOURCE",
                        help="a checkpoint directory or hub id to serve, named NAME in requests (default: SOURCE); "
                             "repeat for several")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port (default: 8000); 0 picks a free one, and the line 'serving ...' names it")
    parser.add_argument("--api-key", default=os.environ.get("VOXPORT_API_KEY"),
                        help="require Authorization: Bearer KEY on every request but /health "
                             "(default: $VOXPORT_API_KEY; none: open)")
    parser.add_argument("--voice", action="append", default=[], metavar="NAME=AUDIO:TEXT",
                        help="a named voice for /v1/audio/speech: a recording and its words; repeatable")
    parser.add_argument("--voices-dir", type=Path, metavar="DIR",
                        help="where custom voices and their consents are kept across restarts "
                             "(default: $XDG_DATA_HOME/voxport/voices or ~/.local/share/voxport/voices)")
    parser.add_argument("--max-queue", type=positive_int, default=64,
                        help="requests waiting per model before 429 (default: 64)")
    parser.add_argument("--max-batch", type=positive_int, default=8,
                        help="speech requests generated together (default: 8)")
    parser.add_argument("--max-seconds", type=positive_float, default=LIMITS.max_seconds,
                        help="the most audio a speech request may allow each chunk of its text (max_seconds; "
                             "default: %(default)s); long texts are spoken whole, chunk by chunk")
    parser.add_argument("--max-input-chars", type=positive_int, default=LIMITS.max_input_chars,
                        help="longest text one speech request may send (default: %(default)s)")
    parser.add_argument("--max-audio-mb", type=positive_float, default=LIMITS.max_audio_bytes / 2**20,
                        help="largest audio one chat request may send (default: %(default)s)")
    parser.add_argument("--aligner", metavar="SOURCE",
                        help="forced aligner for speech requests with \"timestamps\": true, a local directory or hub "
                             "id, loaded at the first such request (default: MMS-300M, see docs/text.md)")
    add_device_options(parser)
    parser.set_defaults(run=run)


def port_number(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from voxport.runtime.devices import resolve_device, resolve_dtype
    from voxport.serve.app import ServerState, create_app
    from voxport.serve.server import bind, load_models, load_voices
    from voxport.serve.voices import default_voices_dir

    listening = bind(args.host, args.port)  # a busy port fails here, before any model loads
    voices = load_voices(args.voice, args.voices_dir or default_voices_dir())
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    quiet_library_progress()
    models = load_models(args.model, device, dtype, args.max_queue, args.max_batch, progress=progress,
                         aligner=args.aligner)
    limits = Limits(max_input_chars=args.max_input_chars, max_audio_bytes=int(args.max_audio_mb * 2**20),
                    max_seconds=args.max_seconds)
    app = create_app(ServerState(models=models, voices=voices, api_key=args.api_key, limits=limits))
    host, port = listening.getsockname()[:2]
    progress(f"serving {', '.join(models)} on http://{host if ':' not in host else f'[{host}]'}:{port}"
             + (" (API key required)" if args.api_key else ""))
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
    return 0
