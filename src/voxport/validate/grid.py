"""Benchmark configurations: a text-length class and a step count, e.g. short_32t (importable without torch)."""

from __future__ import annotations

import re

from voxport.errors import InputError

DEFAULT_CONFIGS = "short_32t,short_128t,short_256t,medium_256t,medium_512t,long_512t"
_CONFIG = re.compile(r"^(short|medium|long)_(\d+)t$")


def parse_configs(text: str) -> list[tuple[str, str, int]]:
    """'short_32t,medium_256t' -> [(name, length class, steps)]."""
    configs = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        match = _CONFIG.match(name)
        if not match or int(match[2]) < 1:
            raise InputError(f"unknown benchmark config '{name}': expected short|medium|long_<steps>t, e.g. short_32t")
        configs.append((name, match[1], int(match[2])))
    if not configs:
        raise InputError("no benchmark configs given: expected e.g. short_32t,medium_256t")
    return configs
