"""What a result was measured on: package versions, device, driver."""

from __future__ import annotations

import platform
import sys

import torch
import transformers

from voxport import __version__
from voxport.runtime.devices import backend_for


def environment(device: torch.device) -> dict:
    backend = backend_for(device)
    return {
        "voxport": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "device_name": backend.device_name(device),
        "driver": backend.driver_version(),
        "visible_devices": backend.visible_devices(),
    }
