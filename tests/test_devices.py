import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from voxport.errors import DeviceError
from voxport.runtime import devices
from voxport.runtime.devices import BACKENDS, available_devices, resolve_device, resolve_dtype


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """Pretend CUDA is here with two devices (the test machine has none)."""
    cuda = BACKENDS["cuda"]
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: 2)
    monkeypatch.setattr(cuda, "supports_dtype", lambda dtype: True)
    return cuda


def test_device_kinds_list_every_backend_in_preference_order():
    from voxport.runtime.kinds import DEVICE_KINDS

    assert tuple(BACKENDS) == DEVICE_KINDS


def test_cpu_always_resolves():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert "cpu" in available_devices()


def test_auto_picks_an_available_device():
    assert str(resolve_device("auto")) in available_devices()


def test_auto_prefers_an_accelerator(two_fake_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_indexed_accelerator(two_fake_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"'cuda:5' does not exist; available: cuda:0, cuda:1, cpu"):
        resolve_device("cuda:5")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_names_the_ones_there():
    with pytest.raises(DeviceError, match=r"device 'cuda' is not available here; available: .*cpu"):
        resolve_device("cuda")


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu", "cpu:0:1", ""])
def test_unknown_device_spelling(spec):
    with pytest.raises(DeviceError, match="expected auto, cpu, cuda"):
        resolve_device(spec)


def test_dtype_defaults():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(DeviceError, match="unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))


def test_accelerator_dtype_default_and_fallback(two_fake_gpus, monkeypatch):
    gpu = torch.device("cuda", 0)
    assert resolve_dtype("auto", gpu) == torch.bfloat16
    monkeypatch.setattr(two_fake_gpus, "supports_dtype", lambda dtype: dtype != torch.bfloat16)
    assert resolve_dtype("auto", gpu) == torch.float16
    with pytest.raises(DeviceError, match="bfloat16 is not supported on cuda:0"):
        resolve_dtype("bfloat16", gpu)


def test_visible_devices_variables(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "2")
    assert BACKENDS["cuda"].visible_devices() == "1,3"
    assert BACKENDS["npu"].visible_devices() == "2"
    assert BACKENDS["cpu"].visible_devices() is None


def test_cpu_peak_memory_sees_a_large_allocation():
    cpu = torch.device("cpu")
    backend = devices.backend_for(cpu)
    backend.reset_peak_memory(cpu)
    before = backend.peak_memory(cpu).allocated_bytes
    block = np.ones(256 * 2**20, dtype=np.uint8)  # touched pages: 256 MiB resident
    after = backend.peak_memory(cpu)
    del block
    assert after.source == "process-rss"
    assert after.allocated_bytes >= before + 200 * 2**20


def test_torch_npu_is_imported_late_and_after_transformers(tmp_path):
    """A stand-in torch_npu checks it is imported only when an NPU is asked for, and after transformers."""
    package = tmp_path / "torch_npu"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent("""
        import sys, types, torch
        assert "transformers" in sys.modules, "torch_npu imported before transformers"
        torch.utils.rename_privateuse1_backend("npu")
        torch.npu = types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 1)
    """)
    )
    script = textwrap.dedent("""
        import sys
        from voxport.runtime.devices import resolve_device
        resolve_device("cpu")
        assert "torch_npu" not in sys.modules
        print(resolve_device("npu"), "torch_npu" in sys.modules)
    """)
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["npu:0", "True"]


@pytest.mark.parametrize("shape", [(3, 48), (2, 5, 48), (1, 1, 48)])
def test_cpu_linear_kernel_computes_what_f_linear_does(shape):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 48, generator=generator) / 7
    fused = torch.randn(3 * 96, 48, generator=generator)  # a row slice of a fused tensor, as the engines pass
    bias = torch.randn(96, generator=generator)
    x = torch.randn(shape, generator=generator)
    kernel = BACKENDS["cpu"].linear_kernel(torch.float32)
    for w, b in ((weight, None), (weight, bias), (fused[96:192], bias), (weight.t().contiguous().t(), None)):
        assert torch.allclose(kernel(x, w, b), torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_cpu_float32_linears_take_onednn_and_the_rest_f_linear():
    if torch.backends.mkldnn.is_available():  # every x86 and ARM build of PyTorch: the fast path is taken
        assert BACKENDS["cpu"].linear_kernel(torch.float32) is not torch.nn.functional.linear
    assert BACKENDS["cpu"].linear_kernel(torch.float16) is torch.nn.functional.linear
    assert BACKENDS["cuda"].linear_kernel(torch.float32) is torch.nn.functional.linear
