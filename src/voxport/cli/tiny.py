"""voxport make-tiny: random checkpoints in the models' real layouts, tiny or at the real models' size."""

from __future__ import annotations

import argparse
from pathlib import Path

from voxport.cli.common import positive_int, progress, quiet_library_progress

ALIGNER = "aligner"


def add_parser(commands) -> None:
    from voxport.models.registry import families

    parser = commands.add_parser(
        "make-tiny",
        help="write a random checkpoint (tiny, or at the real size) for tests, demos and benchmarks",
        description="Write a random checkpoint in the model's real on-disk layout (config, safetensors, "
        "tokenizer, processor), built offline. Its speech is noise; every code path is real. "
        "--size full gives the released model's dimensions in bfloat16 (CSM-1B: 3.6 GB; "
        "Covo-Audio-Chat: about 16 GB, 0.47 GB per LLM layer), so speed and memory are the real "
        "model's; --layers cuts the language model's depth for machines that cannot hold it.",
        epilog="examples: voxport make-tiny csm ./tiny-csm && voxport tts 'Hi.' --model ./tiny-csm\n"
        "          voxport make-tiny covo /tmp/covo-4l --size full --layers 4\n"
        "          voxport make-tiny aligner ./tiny-aligner",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "family",
        choices=[*sorted(families()), ALIGNER],
        help=f"model family, or {ALIGNER}: the forced aligner's layout, for `voxport tts --timestamps --aligner DIR`",
    )
    parser.add_argument("directory", type=Path, help="where to write the checkpoint")
    parser.add_argument(
        "--size",
        choices=["tiny", "full"],
        default="tiny",
        help="tiny widths (default), or the released model's dimensions in bfloat16",
    )
    parser.add_argument(
        "--layers",
        type=positive_int,
        help="with --size full: layers of the language model (CSM's backbone of 16, Covo's LLM "
        "of 28); the encoder, depth decoder and codecs stay whole",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    parser.add_argument("--force", action="store_true", help="replace the directory if it is not empty")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from voxport.errors import InputError
    from voxport.models.registry import family_named
    from voxport.models.tiny import write_tiny_checkpoint

    if args.layers is not None and args.size != "full":
        raise InputError("--layers cuts a full-size model: add --size full")
    quiet_library_progress()
    if args.family == ALIGNER:
        return _write_aligner(args)
    family = family_named(args.family)
    if args.size == "full":
        progress(f"building a full-size random {family.description} checkpoint in bfloat16 (this takes a while)")
    directory = write_tiny_checkpoint(
        family.make_tiny, args.directory, seed=args.seed, overwrite=args.force, size=args.size, layers=args.layers
    )
    kind = "full-size" if args.size == "full" else "tiny"
    depth = f", {args.layers} language-model layers" if args.layers else ""
    print(f"wrote a {kind} random {family.description} checkpoint{depth} to {directory}")
    return 0


def _write_aligner(args: argparse.Namespace) -> int:
    from voxport.errors import InputError
    from voxport.models.tiny import write_tiny_checkpoint
    from voxport.text.align import write_tiny_aligner

    if args.size != "tiny":
        raise InputError("the aligner comes in the tiny size only: drop --size")
    directory = write_tiny_checkpoint(write_tiny_aligner, args.directory, seed=args.seed, overwrite=args.force)
    print(f"wrote a tiny random forced aligner to {directory}")
    return 0
