"""The `voxport` command: parse, call one function, print, exit.

Exit codes: 0 done, 1 a user error (one line on stderr, no traceback), 2 bad usage, 3 a check's verdict is
FAIL (accuracy, repro), 130 interrupted (Ctrl-C or SIGTERM: both unwind, so no output is left half-written).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager

from voxport import __version__
from voxport.cli import batch, chat, serve, tiny, tts, validation
from voxport.errors import VoxportError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _terminate_as_interrupt():
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
    tts.add_parser(commands)
    chat.add_parser(commands)
    validation.add_parsers(commands)
    serve.add_parser(commands)
    batch.add_parser(commands)
    tiny.add_parser(commands)
    return parser


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (kill's default) unwinds like Ctrl-C instead of ending the process on the spot, so temporaries
    are removed and existing outputs are left as they were."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
