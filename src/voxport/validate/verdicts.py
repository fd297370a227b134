"""PASS / WARN / FAIL for a block: its error against the CPU float32 reference, relative to the error a correct
port at the same precision makes (the benchmark: the reference's own block on the CPU in the target's dtype).

This is msprobe's standard (an API on the NPU against the GPU at the same precision), per block and stage.
Two measures, each as a ratio target / benchmark:
- relative: ||target - reference||_2 / ||reference||_2 (an RMSE relative to the signal);
- max relative: max |target - reference| / max |reference| (one bad element, a wrong row).
A benchmark error below the dtype's floor counts as the floor: where the benchmark is exact (a float32 block,
the float32 mel front end) the target must be within a few float32 roundings, not exactly equal.
Limits and the measurements behind them: docs/validation.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ORDER = {"PASS": 0, "WARN": 1, "FAIL": 2}

# Relative-error floors per dtype the benchmark computed in: one unit roundoff for the half dtypes; float32
# looser, as a device's float32 kernels (TF32 convolutions included) differ from the CPU's by more than its own.
FLOORS = {torch.float32: 1e-4, torch.float16: 2.5e-4, torch.bfloat16: 2e-3}


@dataclass(frozen=True)
class Limits:
    pass_relative: float  # ratio of relative errors
    pass_max: float  # ratio of max relative errors
    warn_relative: float
    warn_max: float


# Chosen from measurements (docs/validation.md): correct ports measured 0.97-1.04 (relative) and <= 1.0 (max);
# the weakest planted fault that must fail measured 2.1 / 5.5. FAIL beyond msprobe's 2x for RMSE.
LIMITS = Limits(pass_relative=1.5, pass_max=4.0, warn_relative=2.0, warn_max=8.0)


@dataclass(frozen=True)
class Errors:
    relative: float
    max_relative: float
    finite: bool = True

    def to_json(self) -> dict:
        return {"relative_error": self.relative, "max_relative_error": self.max_relative}


def errors(reference: torch.Tensor, output: torch.Tensor) -> Errors:
    """Errors of `output` against `reference` (same shape), in float64 on the host."""
    if tuple(reference.shape) != tuple(output.shape):
        raise ValueError(f"shape {tuple(output.shape)} where the reference has {tuple(reference.shape)}")
    ref = reference.detach().to("cpu", torch.float64).flatten()
    out = output.detach().to("cpu", torch.float64).flatten()
    finite = torch.isfinite(ref)
    # Infinities the reference has too (a mask's -inf) are agreement; any other NaN or Inf is a failure.
    if not bool(torch.isfinite(out[finite]).all()) or not torch.equal(
        out[~finite].nan_to_num(), ref[~finite].nan_to_num()
    ):
        return Errors(float("inf"), float("inf"), finite=False)
    ref, out = ref[finite], out[finite]
    difference = out - ref
    scale, peak = ref.norm().item(), ref.abs().max().item() if ref.numel() else 0.0
    relative = difference.norm().item() / scale if scale else float(difference.norm().item() > 0)
    max_relative = difference.abs().max().item() / peak if peak else float(relative > 0)
    return Errors(relative, max_relative)


def judge(target: Errors, benchmark: Errors, dtype: torch.dtype) -> dict:
    """The verdict and ratios of a target's errors against the benchmark's, for a block computed in `dtype`."""
    if not target.finite:
        return {"verdict": "FAIL", "reason": "NaN or Inf in the output", "relative_ratio": None, "max_ratio": None}
    floor = FLOORS.get(dtype, FLOORS[torch.float32])
    relative = target.relative / max(benchmark.relative, floor)
    largest = target.max_relative / max(benchmark.max_relative, 10 * floor)
    if relative <= LIMITS.pass_relative and largest <= LIMITS.pass_max:
        verdict = "PASS"
    elif relative <= LIMITS.warn_relative and largest <= LIMITS.warn_max:
        verdict = "WARN"
    else:
        verdict = "FAIL"
    return {"verdict": verdict, "relative_ratio": relative, "max_ratio": largest}


def worst(verdicts) -> str:
    return max(verdicts, key=ORDER.__getitem__, default="PASS")
