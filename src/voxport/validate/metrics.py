"""How far a target tensor is from its reference, in the measures port reviews use.

Definitions (all over every element, in float64):
- cosine: cosine similarity of the flattened tensors (1 when both are all zero).
- max_abs / mean_abs: largest and mean |target - reference|.
- relative_error: ||target - reference||_2 / ||reference||_2 (0 when both are zero).
- within_0_1_percent: share of elements with |target - reference| <= 0.001 x |reference|.
- top1_agreement (logits only): share of positions whose argmax over the last axis agrees.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Comparison:
    cosine: float
    max_abs: float
    mean_abs: float
    relative_error: float
    within_0_1_percent: float
    top1_agreement: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def compare(reference: torch.Tensor, target: torch.Tensor, logits: bool = False) -> Comparison:
    if reference.shape != target.shape:
        raise ValueError(f"shapes differ: reference {tuple(reference.shape)}, target {tuple(target.shape)}")
    ref = reference.detach().to("cpu", torch.float64)
    out = target.detach().to("cpu", torch.float64)
    difference = (out - ref).abs()
    ref_norm, out_norm = ref.norm().item(), out.norm().item()
    if ref_norm == 0 and out_norm == 0:
        cosine = 1.0
    else:
        cosine = (ref.flatten() @ out.flatten()).item() / max(ref_norm * out_norm, 1e-300)
    top1 = None
    if logits:
        top1 = (ref.argmax(-1) == out.argmax(-1)).double().mean().item()
    return Comparison(
        cosine=cosine,
        max_abs=difference.max().item() if difference.numel() else 0.0,
        mean_abs=difference.mean().item() if difference.numel() else 0.0,
        relative_error=difference.norm().item() / ref_norm if ref_norm else float(out_norm > 0),
        within_0_1_percent=(difference <= 1e-3 * ref.abs()).double().mean().item() if difference.numel() else 1.0,
        top1_agreement=top1,
    )
