"""Reproducibility: the same greedy tokens twice on the target, and how long the target keeps to the
CPU float32 reference's tokens (until a reference token falls out of the target's top-k)."""

from __future__ import annotations

import gc

import numpy as np
import torch

from voxport.models.registry import load_model
from voxport.runtime.devices import dtype_name

CPU = torch.device("cpu")


def run_reproducibility(source: str, device: torch.device, dtype: torch.dtype, steps: int = 16, top_k: int = 5,
                        progress=print) -> dict:
    progress(f"reproducibility: reference tokens on cpu/float32 ({steps} steps)")
    reference_model = load_model(source, CPU, torch.float32)
    inputs = reference_model.example_inputs()
    reference_tokens = reference_model.greedy_tokens(inputs, steps).cpu()
    del reference_model
    gc.collect()

    progress(f"reproducibility: greedy twice on {device}/{dtype_name(dtype)}")
    model = load_model(source, device, dtype)
    first, second = (model.greedy_tokens(inputs, steps).cpu() for _ in range(2))
    same_step = _steps_equal(first, second)
    audio = [model.tokens_to_audio(tokens) for tokens in (first, second)]
    in_top_k = _in_top_k(model.token_logits(inputs, reference_tokens), reference_tokens, top_k)
    return {
        "model": str(source), "device": str(device), "dtype": dtype_name(dtype), "steps": steps,
        "step_unit": model.step_unit,
        "repeat": {
            "token_match_rate": float(same_step.mean()),
            "first_divergence": _first_false(same_step),
            "identical_audio": None if audio[0] is None else bool(np.array_equal(audio[0], audio[1])),
        },
        "against_reference": {
            "top_k": top_k,
            "token_match_rate": float(_steps_equal(first, reference_tokens).mean()),
            "agree_until_step": _first_false(in_top_k),  # None: the reference's tokens stayed in the top-k
            "steps_in_top_k": int(in_top_k.sum()),
        },
    }


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
