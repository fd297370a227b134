"""Random streams that make a run repeatable on any device."""

from __future__ import annotations

import secrets

import torch


def fresh_seed() -> int:
    """A seed for runs that asked for none, reported back so the run can be repeated."""
    return secrets.randbits(31)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` itself, so sampling draws no numbers on the host and never syncs."""
    return torch.Generator(device=device).manual_seed(seed)
