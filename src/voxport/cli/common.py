"""What every command shares: device options, number arguments, quiet libraries, progress lines."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager


def add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (best accelerator here), cpu, cuda[:N], npu[:N], mps or xpu[:N] (default: auto)",
    )
    add_dtype_option(parser)


def add_dtype_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights and activations; auto = bfloat16 on accelerators, float32 on CPU",
    )


def quiet_library_progress() -> None:
    """transformers' own loading bars only when stderr is a terminal; logs stay quiet either way."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    if not sys.stderr.isatty():
        logging.disable_progress_bar()


@contextmanager
def progress_bar(total: int, unit: str, description: str):
    """A counter on stderr while work runs, only when a person is watching it; yields `update(done)`."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, desc=description, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)
    try:
        yield lambda done: bar.update(done - bar.n)
    finally:
        bar.close()


def progress(message: str) -> None:
    print(f"voxport: {message}", file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def temperature(text: str) -> float:
    """A sampling temperature: a finite number, 0 or more (0 is greedy, as OpenAI's API reads it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected 0 (greedy) or a positive number, got {text}")
    return value


def add_sampling_options(parser: argparse.ArgumentParser, unit: str) -> None:
    """--temperature, --top-k, --greedy and --seed, each defaulting to the model family's own choice."""
    parser.add_argument(
        "--temperature",
        type=temperature,
        help="sampling temperature; 0 picks the most likely id, as --greedy (default: the model's)",
    )
    parser.add_argument(
        "--top-k", type=non_negative_int, help=f"sample among the K most likely {unit} (default: the model's)"
    )
    parser.add_argument("--greedy", action="store_true", help=f"always pick the most likely {unit} (no sampling)")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
