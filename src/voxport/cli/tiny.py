"""voxport make-tiny: tiny random checkpoints in the models' real layouts."""

from __future__ import annotations

import argparse
from pathlib import Path

from voxport.cli.common import quiet_library_progress


def add_parser(commands) -> None:
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from voxport.models.registry import FAMILIES
    from voxport.models.tiny import write_tiny_checkpoint

    quiet_library_progress()
    family = FAMILIES[args.family]
    directory = write_tiny_checkpoint(family.make_tiny, args.directory, seed=args.seed, overwrite=args.force)
    print(f"wrote a tiny random {family.description} checkpoint to {directory}")
    return 0
