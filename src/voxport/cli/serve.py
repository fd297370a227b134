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
        "serve",
        help="serve the models over an OpenAI-style HTTP API",
        description="POST /v1/audio/speech (models that speak text, e.g. CSM) and /v1/chat/completions (models "
        "that answer audio, e.g. Covo-Audio-Chat) in OpenAI's shapes; custom voices at "
        "/v1/audio/voice_consents and /v1/audio/voices; GET /health, /v1/models and /metrics "
        "(Prometheus). Binds 127.0.0.1 unless told otherwise.",
        epilog="example: voxport serve --model tts=sesame/csm-1b --model chat=tencent/Covo-Audio-Chat "
        "--voice narrator=voice.wav:'The words in voice.wav' --api-key secret",
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]SOURCE",
        help="a checkpoint directory or hub id to serve, named NAME in requests (default: SOURCE); repeat for several",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=port_number,
        default=8000,
        help="port (default: 8000); 0 picks a free one, and the line 'serving ...' names it",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("VOXPORT_API_KEY"),
        help="require Authorization: Bearer KEY on every request but /health (default: $VOXPORT_API_KEY; none: open)",
    )
    parser.add_argument(
        "--voice",
        action="append",
        default=[],
        metavar="NAME=AUDIO:TEXT",
        help="a named voice for /v1/audio/speech: a recording and its words; repeatable",
    )
    parser.add_argument(
        "--voices-dir",
        type=Path,
        metavar="DIR",
        help="where custom voices and their consents are kept across restarts "
        "(default: $XDG_DATA_HOME/voxport/voices or ~/.local/share/voxport/voices)",
    )
    parser.add_argument(
        "--max-queue", type=positive_int, default=64, help="requests waiting per model before 429 (default: 64)"
    )
    parser.add_argument(
        "--max-batch", type=positive_int, default=8, help="speech requests generated together (default: 8)"
    )
    parser.add_argument(
        "--max-seconds",
        type=positive_float,
        default=LIMITS.max_seconds,
        help="the most audio a speech request may allow each chunk of its text (max_seconds; "
        "default: %(default)s); long texts are spoken whole, chunk by chunk",
    )
    parser.add_argument(
        "--max-input-chars",
        type=positive_int,
        default=LIMITS.max_input_chars,
        help="longest text one speech request may send (default: %(default)s)",
    )
    parser.add_argument(
        "--max-audio-mb",
        type=positive_float,
        default=LIMITS.max_audio_bytes / 2**20,
        help="largest audio one chat request may send (default: %(default)s)",
    )
    parser.add_argument(
        "--aligner",
        metavar="SOURCE",
        help='forced aligner for speech requests with "timestamps": true, a local directory or hub '
        "id, loaded at the first such request (default: MMS-300M, see docs/text.md)",
    )
    parser.add_argument(
        "--replicas",
        type=replica_count,
        metavar="N|auto",
        help="serve each model from N replicas on Ray Serve, one device each (default with "
        "--cluster: one per device of the --device kind; auto: Ray Serve adds and removes "
        "replicas by queue length, from 1 to one per device); without --replicas or "
        "--cluster the server is this one process",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="deploy the replicas on the running Ray cluster at ADDRESS (e.g. ray://head:10001 or "
        "auto); --voices-dir must then be a directory every node sees",
    )
    add_device_options(parser)
    parser.set_defaults(run=run)


def port_number(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text}")
    return value


def replica_count(text: str) -> int | str:
    return "auto" if text.strip().lower() == "auto" else positive_int(text)


def run(args: argparse.Namespace) -> int:
    if args.replicas is not None or args.cluster:
        return run_replicas(args)
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
    models = load_models(
        args.model, device, dtype, args.max_queue, args.max_batch, progress=progress, aligner=args.aligner
    )
    limits = Limits(
        max_input_chars=args.max_input_chars,
        max_audio_bytes=int(args.max_audio_mb * 2**20),
        max_seconds=args.max_seconds,
    )
    app = create_app(ServerState(models=models, voices=voices, api_key=args.api_key, limits=limits))
    host, port = listening.getsockname()[:2]
    progress(
        f"serving {', '.join(models)} on http://{host if ':' not in host else f'[{host}]'}:{port}"
        + (" (API key required)" if args.api_key else "")
    )
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
    return 0


def run_replicas(args: argparse.Namespace) -> int:
    """The models as replicas on Ray Serve (embedded, or the cluster at --cluster) behind this process's entry."""
    import uvicorn

    from voxport.batch.cluster import device_kind, devices_offered, model_for_workers, ray_runtime
    from voxport.errors import InputError
    from voxport.models.registry import family_of
    from voxport.serve.app import Limits
    from voxport.serve.replicas import ReplicaBoard, ReplicaSettings, deploy, entry_app, require_serve
    from voxport.serve.server import bind, load_voices, model_specs
    from voxport.serve.socket_tunnel import SocketInbox
    from voxport.serve.voices import default_voices_dir

    serve = require_serve()  # one line when Ray Serve is missing, before anything starts
    listening = bind(args.host, args.port)
    voices_dir = (args.voices_dir or default_voices_dir()).expanduser().resolve()
    voices = load_voices(args.voice, voices_dir)
    models = {
        name: (model_for_workers(source), family.name, family.capability)
        for name, source in model_specs(args.model).items()
        for family in [family_of(source)]
    }
    limits = Limits(
        max_input_chars=args.max_input_chars,
        max_audio_bytes=int(args.max_audio_mb * 2**20),
        max_seconds=args.max_seconds,
    )
    fixed = args.replicas if isinstance(args.replicas, int) else None
    with ray_runtime(args.cluster, cpus=(fixed or 1) * len(models) + 1) as ray:
        kind = device_kind(args.device, ray)
        offered = devices_offered(ray, kind)
        each = fixed or (1 if kind == "cpu" and args.replicas is None else max(1, offered // len(models)))
        if each * len(models) > offered:
            raise InputError(
                f"--replicas {each} for {len(models)} model(s) on {kind} needs {each * len(models)} "
                f"devices but the Ray runtime has {offered}: lower --replicas or add nodes"
            )
        settings = ReplicaSettings(
            kind,
            args.dtype,
            args.max_queue,
            args.max_batch,
            limits,
            voices_dir,
            {name: (str(Path(audio).resolve()), words) for name, (audio, words) in voices.named.items()},
            args.api_key,
        )
        board = ray.remote(ReplicaBoard).options(num_cpus=0).remote()
        inbox = ray.remote(SocketInbox).options(num_cpus=0).remote()
        progress(
            f"starting {each if fixed or args.replicas is None else f'1 to {each}'} replica(s) of "
            f"{', '.join(models)} on {kind} with Ray Serve"
        )
        deployed = deploy(serve, models, settings, f"auto:{each}" if args.replicas == "auto" else each, board, inbox)
        app = entry_app(deployed, voices, args.api_key, limits, (board, inbox), serve)
        host, port = listening.getsockname()[:2]
        progress(
            f"serving {', '.join(models)} on http://{host if ':' not in host else f'[{host}]'}:{port}"
            + (" (API key required)" if args.api_key else "")
            + f" (replicas on {kind})"
        )
        try:
            uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
        finally:
            serve.shutdown()
    return 0
