"""Random streams that make a run repeatable on any device."""

from __future__ import annotations

import secrets

import torch

from voxport.errors import InputError

SEED_LIMIT = 2**64  # torch generators take seeds in 0 .. 2**64 - 1


def fresh_seed() -> int:
    """A seed for runs that asked for none, reported back so the run can be repeated."""
    return secrets.randbits(31)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` itself, so sampling draws no numbers on the host and never syncs."""
    return torch.Generator(device=device).manual_seed(seed)


def check_seed(seed: int | None) -> None:
    """Refuse, before any work, a seed no generator can take (None: a fresh one will be drawn)."""
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise InputError(f"seed is {seed}: expected an integer in 0..2**64-1")
