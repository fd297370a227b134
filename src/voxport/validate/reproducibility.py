"""Reproducibility: the same tokens twice on the target, greedy and seeded, and how the target's tokens keep to a
reference device's (CPU float32 by default).

Everything runs through the code that generates (the family's engine: CSM's static-cache frame step, Covo's
token engine), teacher forcing included: a fault in the engine (its KV cache, its rotary tables) is a fault here.

Verdict: FAIL when a repeat on the target differs (greedy, or sampling from the same seed: the port is not
deterministic), when a reference token falls out of the target's top-k under teacher forcing (a correct
port at any precision keeps the reference's choice among its best few), or, where target and reference both
compute in float32, when the target's teacher-forced logits part from the reference's by more than NEAR_TIE of
the largest logit, or the greedy streams part other than at a near tie (the reference's id within NEAR_TIE of
the target's pick in the target's own logits); PASS otherwise. In lower precision where the free-running
streams part is reported, not judged: rounding may pick another near tie.
"""

from __future__ import annotations

import gc

import numpy as np
import torch

from voxport.models.registry import load_model
from voxport.runtime.devices import dtype_name
from voxport.validate.verdicts import FLOORS

CPU = torch.device("cpu")
SEED = 1234
# In float32 the target's logits keep this close to the reference's, and greedy streams part only where two ids'
# logits lie this close, relative to the largest logit of that position: 10x the float32 floor accuracy allows a
# device's kernels (as its max-error floor is 10x).
NEAR_TIE = 10 * FLOORS[torch.float32]


def run_reproducibility(
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    steps: int = 16,
    top_k: int = 5,
    reference_device: torch.device = CPU,
    reference_dtype: torch.dtype = torch.float32,
    progress=print,
    reference_source: str | None = None,
) -> dict:
    """Repeats on `source` at `device`/`dtype`, and its streams against `reference_source` (default: the same
    checkpoint) on the reference device and dtype."""
    reference_source = reference_source or source
    progress(
        f"reproducibility: reference tokens of {reference_source} on {reference_device}/"
        f"{dtype_name(reference_dtype)} ({steps} steps)"
    )
    reference_model = load_model(reference_source, reference_device, reference_dtype)
    inputs = reference_model.example_inputs()
    reference = {
        "greedy": reference_model.greedy_tokens(inputs, steps).cpu(),
        "sampled": reference_model.sampled_tokens(inputs, steps, SEED).cpu(),
    }
    reference_forced = reference_model.token_logits(inputs, reference["greedy"]).cpu()
    del reference_model
    gc.collect()

    progress(f"reproducibility: greedy and seeded sampling, twice each, on {device}/{dtype_name(dtype)}")
    model = load_model(source, device, dtype)
    runs = {
        "greedy": [model.greedy_tokens(inputs, steps).cpu() for _ in range(2)],
        "sampled": [model.sampled_tokens(inputs, steps, SEED).cpu() for _ in range(2)],
    }
    audio = [model.tokens_to_audio(tokens) for tokens in runs["greedy"]]
    forced = model.token_logits(inputs, reference["greedy"]).cpu()
    in_top_k = _in_top_k(forced, reference["greedy"], top_k)
    repeats = {mode: _steps_equal(*pair) for mode, pair in runs.items()}
    result = {
        "model": str(source),
        "device": str(device),
        "dtype": dtype_name(dtype),
        "steps": steps,
        "step_unit": model.step_unit,
        "seed": SEED,
        "repeat": {
            "token_match_rate": float(repeats["greedy"].mean()),
            "first_divergence": _first_false(repeats["greedy"]),
            "sampled_token_match_rate": float(repeats["sampled"].mean()),
            "sampled_first_divergence": _first_false(repeats["sampled"]),
            "identical_audio": None if audio[0] is None else bool(np.array_equal(audio[0], audio[1])),
        },
        "against_reference": {
            "model": str(reference_source),
            "device": str(reference_device),
            "dtype": dtype_name(reference_dtype),
            "top_k": top_k,
            "token_match_rate": float(_steps_equal(runs["greedy"][0], reference["greedy"]).mean()),
            "greedy_parts_at_step": _first_false(_steps_equal(runs["greedy"][0], reference["greedy"])),
            "sampled_parts_at_step": _first_false(_steps_equal(runs["sampled"][0], reference["sampled"])),
            "agree_until_step": _first_false(in_top_k),  # None: the reference's tokens stayed in the top-k
            "steps_in_top_k": int(in_top_k.sum()),
        },
    }
    parting = result["against_reference"]["greedy_parts_at_step"]
    float32 = dtype == torch.float32 and reference_dtype == torch.float32
    gap = None if parting is None else _parting_gap(forced, runs["greedy"][0], reference["greedy"], parting)
    result["against_reference"]["parting_gap"] = gap
    logits_gap = float((forced.double() - reference_forced.double()).abs().max() / reference_forced.abs().max())
    result["against_reference"]["logits_gap"] = logits_gap
    problems = [
        f"greedy repeat parts at step {result['repeat']['first_divergence']}"
        if result["repeat"]["first_divergence"] is not None
        else None,
        f"seeded repeat parts at step {result['repeat']['sampled_first_divergence']}"
        if result["repeat"]["sampled_first_divergence"] is not None
        else None,
        f"a reference token leaves the top-{top_k} at step {result['against_reference']['agree_until_step']}"
        if result["against_reference"]["agree_until_step"] is not None
        else None,
        f"in float32 the greedy streams part at step {parting}, where the reference's id lies "
        f"{gap:.2e} of the largest logit below the target's pick (a near tie is within {NEAR_TIE:.0e})"
        if float32 and gap is not None and gap > NEAR_TIE
        else None,
        f"in float32 the teacher-forced logits part from the reference's by {logits_gap:.2e} of the largest "
        f"logit (float32 kernels keep within {NEAR_TIE:.0e})"
        if float32 and logits_gap > NEAR_TIE
        else None,
    ]
    result["problems"] = [problem for problem in problems if problem]
    result["verdict"] = "FAIL" if result["problems"] else "PASS"
    return result


def _steps_equal(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per step: every id of the step equal (a step is one token, or one frame of codebooks)."""
    return (a == b).reshape(a.shape[0], -1).all(dim=1).numpy()


def _in_top_k(logits: torch.Tensor, tokens: torch.Tensor, k: int) -> np.ndarray:
    best = logits.topk(k, dim=-1).indices.cpu()
    hits = (best == tokens.unsqueeze(-1)).any(-1)
    return hits.reshape(tokens.shape[0], -1).all(dim=1).numpy()


def _parting_gap(logits: torch.Tensor, target: torch.Tensor, reference: torch.Tensor, step: int) -> float:
    """At the first id of `step` where the target's greedy stream leaves the reference's: how far the reference's
    id lies below the target's pick in the target's teacher-forced logits there, relative to the largest logit
    (0: a tie). The two streams share everything before that id, so the teacher-forced logits are the ones the
    target picked from."""
    picked, expected = target[step].reshape(-1), reference[step].reshape(-1)
    index = int(torch.nonzero(picked != expected)[0])
    scores = logits[step].reshape(picked.numel(), -1)[index].double()
    return float((scores[picked[index]] - scores[expected[index]]) / scores.abs().max())


def _first_false(flags: np.ndarray) -> int | None:
    misses = np.flatnonzero(~flags)
    return int(misses[0]) if misses.size else None
