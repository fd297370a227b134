"""A `voxport serve` process on a free loopback port, for the benchmarks that time requests through a server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def local_server(*options: str) -> Iterator[str]:
    """`voxport serve OPTIONS --port 0` started and stopped around the block; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "voxport", "serve", *options, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if found := re.search(r"serving .* on (http://\S+)", line):
                yield found.group(1)
                return
        raise SystemExit(f"the server did not start (exit {process.wait()})")
    finally:
        process.terminate()
        process.wait(timeout=60)
