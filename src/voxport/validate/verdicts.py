"""PASS / WARN / FAIL for a comparison, with limits that follow the target dtype's precision.

A dtype's unit roundoff u (float32 6e-8, float16 4.9e-4, bfloat16 3.9e-3) grows through a network's depth;
a healthy port lands within a few tens of u of relative error (bfloat16 and float16 ports of transformers
typically 1-5 % on logits) with direction kept (cosine). A broken kernel or layer shows as a jump well past
that. So: PASS needs cosine and relative error inside the dtype's healthy band, WARN allows 3x more error
and a looser cosine, anything beyond FAILs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from voxport.validate.metrics import Comparison


@dataclass(frozen=True)
class Limits:
    pass_cosine: float
    pass_relative: float
    warn_cosine: float
    warn_relative: float


LIMITS = {
    torch.float32: Limits(pass_cosine=0.99999, pass_relative=1e-3, warn_cosine=0.9999, warn_relative=3e-3),
    torch.float16: Limits(pass_cosine=0.9995, pass_relative=0.03, warn_cosine=0.998, warn_relative=0.09),
    torch.bfloat16: Limits(pass_cosine=0.998, pass_relative=0.06, warn_cosine=0.99, warn_relative=0.18),
}

ORDER = {"PASS": 0, "WARN": 1, "FAIL": 2}


def verdict(comparison: Comparison, dtype: torch.dtype) -> str:
    limits = LIMITS[dtype]
    if comparison.cosine >= limits.pass_cosine and comparison.relative_error <= limits.pass_relative:
        return "PASS"
    if comparison.cosine >= limits.warn_cosine and comparison.relative_error <= limits.warn_relative:
        return "WARN"
    return "FAIL"


def worst(verdicts) -> str:
    return max(verdicts, key=ORDER.__getitem__, default="PASS")
