"""Accuracy of a port: the target device/dtype against a CPU float32 reference, output by output and block
by block, so a broken layer is named, not just noticed."""

from __future__ import annotations

import gc

import torch

from voxport.models.registry import load_model
from voxport.runtime.devices import dtype_name
from voxport.validate.capture import capture
from voxport.validate.metrics import compare
from voxport.validate.verdicts import verdict, worst

CPU = torch.device("cpu")


def run_accuracy(source: str, device: torch.device, dtype: torch.dtype, reference_source: str | None = None,
                 progress=print) -> dict:
    """Compare `source` on `device`/`dtype` with `reference_source` (default: the same) on the CPU in float32."""
    reference_source = reference_source or source
    progress(f"accuracy: reference {reference_source} on cpu/float32")
    reference_model = load_model(reference_source, CPU, torch.float32)
    inputs = reference_model.example_inputs()
    reference = capture(reference_model, inputs)
    del reference_model
    gc.collect()
    progress(f"accuracy: target {source} on {device}/{dtype_name(dtype)}")
    target_model = load_model(source, device, dtype)
    target = capture(target_model, inputs)
    del target_model

    outputs = {}
    for name, tensor in reference.outputs.items():
        comparison = compare(tensor, target.outputs[name], logits="logits" in name)
        outputs[name] = {**comparison.to_json(), "verdict": verdict(comparison, dtype)}
    layers = []
    for name, tensor in reference.blocks.items():
        if name in target.blocks and target.blocks[name].shape == tensor.shape:
            comparison = compare(tensor, target.blocks[name])
            layers.append({"module": name, **comparison.to_json(), "verdict": verdict(comparison, dtype)})
    return {
        "model": str(source),
        "reference": {"model": str(reference_source), "device": "cpu", "dtype": "float32",
                      "forward_seconds": reference.forward_seconds},
        "target": {"model": str(source), "device": str(device), "dtype": dtype_name(dtype),
                   "forward_seconds": target.forward_seconds},
        "speedup": reference.forward_seconds / target.forward_seconds,
        "outputs": outputs,
        "layers": layers,
        "first_drift_module": first_drift(layers),
        "largest_step_module": largest_step(layers),
        "verdict": worst(entry["verdict"] for entry in outputs.values()),
    }


def first_drift(layers: list[dict]) -> str | None:
    """The first block (in execution order) that fails; failing that, the first that warns."""
    for level in ("FAIL", "WARN"):
        for layer in layers:
            if layer["verdict"] == level:
                return layer["module"]
    return None


def largest_step(layers: list[dict]) -> str | None:
    """The block whose relative error rises most over the worst one before it."""
    best, best_step, running = None, 0.0, 0.0
    for layer in layers:
        step = layer["relative_error"] - running
        if step > best_step:
            best, best_step = layer["module"], step
        running = max(running, layer["relative_error"])
    return best
