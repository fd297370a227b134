"""One backend object per device kind, so no other layer branches on "cuda" or "npu".

A backend answers the questions every port asks of its hardware: is it there, how many, what is it called,
which dtypes does it run, how to wait for it, and how much memory a job took at its peak.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

from voxport.errors import DeviceError

DEVICE_CHOICES = "auto, cpu, cuda[:N], npu[:N], mps or xpu[:N]"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SPEC = re.compile(r"^(?P<kind>cpu|cuda|npu|mps|xpu)(?::(?P<index>\d+))?$")


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of a job: device allocator figures on accelerators, the process's resident set on CPU."""

    allocated_bytes: int
    reserved_bytes: int | None
    source: str  # "device" or "process-rss"


class DeviceBackend:
    """The CPU; accelerators override what differs."""

    kind = "cpu"
    visible_devices_env: str | None = None
    dispatch_key = "CPU"  # where PyTorch registers this device's kernels
    grouped_query_attention = True  # SDPA's enable_gqa: keys/values shared by head groups without copies
    cluster_resource: str | None = None  # what a Ray cluster calls one of these devices (None: it counts CPUs)

    def is_built(self) -> bool:
        """Whether this PyTorch install has the backend at all (kernels registered), device or not."""
        return True

    def driver_version(self) -> str | None:
        return None

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def device_name(self, device: torch.device) -> str:
        """The processor's model name and the cores this process may use, e.g. "AMD EPYC 7763 (2 cores)"."""
        return f"{_cpu_model()} ({_usable_cores()} cores)"

    def supports_dtype(self, dtype: torch.dtype) -> bool:
        return dtype in DTYPES.values()

    def default_dtype(self) -> torch.dtype:
        return torch.float32

    def synchronize(self, device: torch.device) -> None:
        """CPU work is synchronous: nothing to wait for."""

    def reset_peak_memory(self, device: torch.device) -> None:
        # Linux resets the resident-set high-water mark (VmHWM) when "5" is written to clear_refs.
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_memory(self, device: torch.device) -> PeakMemory:
        return PeakMemory(allocated_bytes=_process_peak_rss(), reserved_bytes=None, source="process-rss")

    def linear_kernel(self, dtype: torch.dtype) -> Callable:
        """What the engines call for x @ weight.T (+ bias) on weights of `dtype`: F.linear's maths on the same
        weights, by the fastest kernel this device has. On CPU in float32 that is oneDNN's inner product (the
        kernel PyTorch's compiler picks for CPU linears): at batch 1 it streams the models' weights 1.2-2.1x
        faster than the BLAS behind F.linear, and runs 22-token prompts 1.5-2.7x faster
        (benchmarks/cpu_linear.py). bfloat16 already reaches oneDNN through F.linear; float16 has no oneDNN
        inner product on most CPUs."""
        return _onednn_linear if dtype == torch.float32 and _has_onednn_linear() else F.linear

    def compile_step(self, step: Callable) -> Callable | None:
        """`step` captured as one graph for this device, or None where it runs eagerly (see the reason)."""
        return None

    def compile_unsupported_reason(self) -> str | None:
        """Why compile_step gives no graph here, or None when it does."""
        return f"generation steps are captured as graphs on CUDA only (CUDA graphs); {self.kind} runs eagerly"

    def visible_devices(self) -> str | None:
        return os.environ.get(self.visible_devices_env) if self.visible_devices_env else None


class AcceleratorBackend(DeviceBackend):
    """CUDA, Ascend NPU and Intel XPU share one device-module API (torch.cuda / torch.npu / torch.xpu)."""

    def __init__(
        self, kind: str, visible_devices_env: str | None, dispatch_key: str, cluster_resource: str | None = "GPU"
    ):
        self.kind = kind
        self.visible_devices_env = visible_devices_env
        self.dispatch_key = dispatch_key
        self.cluster_resource = cluster_resource

    def is_built(self) -> bool:
        return bool(getattr(torch._C, f"_has_{self.kind}", False))

    def module(self) -> ModuleType | None:
        return getattr(torch, self.kind, None)

    def is_available(self) -> bool:
        module = self.module()
        return bool(module is not None and module.is_available())

    def device_count(self) -> int:
        return self.module().device_count() if self.is_available() else 0

    def device_name(self, device: torch.device) -> str:
        return self.module().get_device_name(device)

    def supports_dtype(self, dtype: torch.dtype) -> bool:
        if dtype == torch.bfloat16:
            is_bf16_supported = getattr(self.module(), "is_bf16_supported", None)
            return bool(is_bf16_supported()) if is_bf16_supported else True
        return dtype in DTYPES.values()

    def default_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.supports_dtype(torch.bfloat16) else torch.float16

    def synchronize(self, device: torch.device) -> None:
        torch.accelerator.synchronize(device)

    def linear_kernel(self, dtype: torch.dtype) -> Callable:
        """F.linear: each accelerator's own matrix-multiply library is behind it already."""
        return F.linear

    def reset_peak_memory(self, device: torch.device) -> None:
        self.module().reset_peak_memory_stats(device)

    def peak_memory(self, device: torch.device) -> PeakMemory:
        module = self.module()
        return PeakMemory(
            allocated_bytes=int(module.max_memory_allocated(device)),
            reserved_bytes=int(module.max_memory_reserved(device)),
            source="device",
        )


class CudaBackend(AcceleratorBackend):
    def __init__(self):
        super().__init__("cuda", "CUDA_VISIBLE_DEVICES", "CUDA")

    def driver_version(self) -> str | None:
        return f"CUDA {torch.version.cuda}" if torch.version.cuda else None

    def compile_step(self, step: Callable) -> Callable:
        """One CUDA graph per step: every launch of the step's kernels replayed at once."""
        return torch.compile(step, mode="reduce-overhead", fullgraph=True)

    def compile_unsupported_reason(self) -> str | None:
        return None


class NpuBackend(AcceleratorBackend):
    """Ascend NPU through torch_npu, imported only when an NPU is asked for."""

    grouped_query_attention = False  # not every torch_npu release takes enable_gqa: heads are expanded instead

    def __init__(self):
        super().__init__("npu", "ASCEND_RT_VISIBLE_DEVICES", "PrivateUse1", cluster_resource="NPU")

    def is_built(self) -> bool:
        return importlib.util.find_spec("torch_npu") is not None

    def driver_version(self) -> str | None:
        if not self.is_built():
            return None
        self.module()
        return f"torch_npu {getattr(sys.modules['torch_npu'], '__version__', 'unknown')}"

    def module(self) -> ModuleType | None:
        if importlib.util.find_spec("torch_npu") is None:
            return None
        # torch_npu patches torch on import; importing it before transformers breaks transformers' imports
        # on some installs, so transformers always goes first.
        importlib.import_module("transformers")
        importlib.import_module("torch_npu")
        return getattr(torch, "npu", None)

    def compile_unsupported_reason(self) -> str | None:
        return "NPU graph mode (torchair) is not wired in yet; it plugs in as NpuBackend.compile_step. Running eagerly"


class MpsBackend(AcceleratorBackend):
    """Apple GPUs: one device, no peak tracking (the current driver allocation is reported instead)."""

    grouped_query_attention = False  # older MPS SDPA kernels lack enable_gqa: heads are expanded instead

    def __init__(self):
        super().__init__("mps", None, "MPS", cluster_resource=None)  # Ray does not schedule Apple GPUs

    def is_available(self) -> bool:
        return bool(torch.backends.mps.is_available())

    def device_count(self) -> int:
        return 1 if self.is_available() else 0

    def device_name(self, device: torch.device) -> str:
        return "Apple GPU (mps)"

    def supports_dtype(self, dtype: torch.dtype) -> bool:
        if dtype == torch.bfloat16:
            return bool(torch.backends.mps.is_macos_or_newer(14, 0))
        return dtype in DTYPES.values()

    def reset_peak_memory(self, device: torch.device) -> None:
        """MPS keeps no peak counter."""

    def peak_memory(self, device: torch.device) -> PeakMemory:
        return PeakMemory(
            allocated_bytes=int(torch.mps.current_allocated_memory()),
            reserved_bytes=int(torch.mps.driver_allocated_memory()),
            source="device-current",
        )


BACKENDS: dict[str, DeviceBackend] = {
    "cuda": CudaBackend(),
    "npu": NpuBackend(),
    "xpu": AcceleratorBackend("xpu", "ZE_AFFINITY_MASK", "XPU"),
    "mps": MpsBackend(),
    "cpu": DeviceBackend(),
}
"""In order of preference for --device auto (the same order as runtime.kinds.DEVICE_KINDS)."""


def backend_for(device: torch.device | str) -> DeviceBackend:
    return BACKENDS[torch.device(device).type]


def available_devices() -> list[str]:
    """Every device this machine can run on, as --device spellings."""
    found = []
    for kind, backend in BACKENDS.items():
        if kind == "cpu":
            found.append("cpu")
        elif kind == "mps":
            found += ["mps"] if backend.is_available() else []
        else:
            found += [f"{kind}:{index}" for index in range(backend.device_count())]
    return found


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a --device spelling into a torch.device that exists here, or fail naming the ones that do."""
    spec = spec.strip().lower()
    if spec == "auto":
        for kind, backend in BACKENDS.items():
            if backend.is_available():
                return torch.device(kind, 0) if kind != "cpu" else torch.device("cpu")
    match = _SPEC.match(spec)
    if not match:
        raise DeviceError(f"unknown device '{spec}': expected {DEVICE_CHOICES}")
    kind, index = match["kind"], match["index"]
    if kind == "cpu":
        return torch.device("cpu")
    backend = BACKENDS[kind]
    if not backend.is_available():
        raise DeviceError(f"device '{spec}' is not available here; available: {', '.join(available_devices())}")
    index = int(index or 0)
    if index >= backend.device_count():
        raise DeviceError(f"device '{spec}' does not exist; available: {', '.join(available_devices())}")
    return torch.device(kind, index)


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """auto = bfloat16 on accelerators (float16 where bfloat16 is missing), float32 on CPU."""
    backend = backend_for(device)
    if spec == "auto":
        return backend.default_dtype()
    if spec not in DTYPES:
        raise DeviceError(f"unknown dtype '{spec}': expected auto, {', '.join(DTYPES)}")
    dtype = DTYPES[spec]
    if not backend.supports_dtype(dtype):
        raise DeviceError(f"dtype {spec} is not supported on {device}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _cpu_model() -> str:
    """Linux: /proc/cpuinfo's model name; macOS: the CPU brand string; else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            return (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True, timeout=5
                ).stdout.strip()
                or platform.machine()
            )
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "CPU"


def _usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one), which is what torch uses."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def process_memory_bytes(field: str) -> int | None:
    """A memory figure of this process from Linux's /proc/self/status (VmRSS: resident now, VmHWM: its
    high-water mark), in bytes; None where there is no such file."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _process_peak_rss() -> int:
    """High-water mark of this process's resident set, in bytes."""
    peak_here = process_memory_bytes("VmHWM")
    if peak_here is not None:
        return peak_here
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _has_onednn_linear() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear by oneDNN on the plain [out, in] weight (no packed copy): no fused activation ("none")."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
