"""Running a model's teacher-forced forward while recording what every block outputs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from voxport.models.base import SpeechModel
from voxport.runtime.devices import backend_for


@dataclass
class Capture:
    outputs: dict[str, torch.Tensor]  # forward_logits' outputs, on the CPU
    blocks: dict[str, torch.Tensor]  # every block's outputs, flattened and joined, in first-call order
    forward_seconds: float  # one warm forward, device synchronized


def block_names(model: SpeechModel) -> list[str]:
    """The repeated units of a network: every module held in a ModuleList (layers, blocks, stages)."""
    modules = dict(model.named_modules())
    return [name for name, module in modules.items()
            if "." in name and isinstance(modules.get(name.rsplit(".", 1)[0]), nn.ModuleList)]


def capture(model: SpeechModel, inputs) -> Capture:
    modules = dict(model.named_modules())
    recorded: dict[str, list[torch.Tensor]] = {}

    def recorder(name):
        def hook(module, args, output):
            tensor = _first_tensor(output)
            if tensor is not None and tensor.is_floating_point():
                recorded.setdefault(name, []).append(tensor.detach().float().flatten().cpu())
        return hook

    handles = [modules[name].register_forward_hook(recorder(name)) for name in block_names(model)]
    try:
        outputs = {name: tensor.detach().float().cpu() for name, tensor in model.forward_logits(inputs).items()}
    finally:
        for handle in handles:
            handle.remove()
    backend = backend_for(model.device)
    backend.synchronize(model.device)
    start = time.perf_counter()
    model.forward_logits(inputs)
    backend.synchronize(model.device)
    seconds = time.perf_counter() - start
    return Capture(outputs, {name: torch.cat(parts) for name, parts in recorded.items()}, seconds)


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return getattr(output, "last_hidden_state", None)
