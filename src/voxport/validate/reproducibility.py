"""Reproducibility: the same tokens twice on the target, greedy and seeded, and how the target's tokens keep to a
reference device's (CPU float32 by default).

Verdict: FAIL when a repeat on the target differs (greedy, or sampling from the same seed: the port is not
deterministic), or when a reference token falls out of the target's top-k under teacher forcing (a correct
port at any precision keeps the reference's choice among its best few); PASS otherwise. Where the free-running
streams part from the reference's is reported, not judged: low precision may pick another near-tie.
"""

from __future__ import annotations

import gc

import numpy as np
import torch

from voxport.models.registry import load_model
from voxport.runtime.devices import dtype_name

CPU = torch.device("cpu")
SEED = 1234


def run_reproducibility(source: str, device: torch.device, dtype: torch.dtype, steps: int = 16, top_k: int = 5,
                        reference_device: torch.device = CPU, reference_dtype: torch.dtype = torch.float32,
                        progress=print) -> dict:
    progress(f"reproducibility: reference tokens on {reference_device}/{dtype_name(reference_dtype)} ({steps} steps)")
    reference_model = load_model(source, reference_device, reference_dtype)
    inputs = reference_model.example_inputs()
    reference = {"greedy": reference_model.greedy_tokens(inputs, steps).cpu(),
                 "sampled": reference_model.sampled_tokens(inputs, steps, SEED).cpu()}
    del reference_model
    gc.collect()

    progress(f"reproducibility: greedy and seeded sampling, twice each, on {device}/{dtype_name(dtype)}")
    model = load_model(source, device, dtype)
    runs = {"greedy": [model.greedy_tokens(inputs, steps).cpu() for _ in range(2)],
            "sampled": [model.sampled_tokens(inputs, steps, SEED).cpu() for _ in range(2)]}
    audio = [model.tokens_to_audio(tokens) for tokens in runs["greedy"]]
    in_top_k = _in_top_k(model.token_logits(inputs, reference["greedy"]), reference["greedy"], top_k)
    repeats = {mode: _steps_equal(*pair) for mode, pair in runs.items()}
    result = {
        "model": str(source), "device": str(device), "dtype": dtype_name(dtype), "steps": steps,
        "step_unit": model.step_unit, "seed": SEED,
        "repeat": {
            "token_match_rate": float(repeats["greedy"].mean()),
            "first_divergence": _first_false(repeats["greedy"]),
            "sampled_token_match_rate": float(repeats["sampled"].mean()),
            "sampled_first_divergence": _first_false(repeats["sampled"]),
            "identical_audio": None if audio[0] is None else bool(np.array_equal(audio[0], audio[1])),
        },
        "against_reference": {
            "device": str(reference_device), "dtype": dtype_name(reference_dtype), "top_k": top_k,
            "token_match_rate": float(_steps_equal(runs["greedy"][0], reference["greedy"]).mean()),
            "greedy_parts_at_step": _first_false(_steps_equal(runs["greedy"][0], reference["greedy"])),
            "sampled_parts_at_step": _first_false(_steps_equal(runs["sampled"][0], reference["sampled"])),
            "agree_until_step": _first_false(in_top_k),  # None: the reference's tokens stayed in the top-k
            "steps_in_top_k": int(in_top_k.sum()),
        },
    }
    problems = [f"greedy repeat parts at step {result['repeat']['first_divergence']}"
                if result["repeat"]["first_divergence"] is not None else None,
                f"seeded repeat parts at step {result['repeat']['sampled_first_divergence']}"
                if result["repeat"]["sampled_first_divergence"] is not None else None,
                f"a reference token leaves the top-{top_k} at step {result['against_reference']['agree_until_step']}"
                if result["against_reference"]["agree_until_step"] is not None else None]
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


def _first_false(flags: np.ndarray) -> int | None:
    misses = np.flatnonzero(~flags)
    return int(misses[0]) if misses.size else None
