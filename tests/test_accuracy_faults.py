"""accuracy catches planted port faults at the right block, in bfloat16 and float16, and passes correct ports.

The faults (tests/faults.py) live only in the target: a copy of the checkpoint or the target model's code.
One short example per run keeps this quick; tests/fault_table.py runs every fault on every default example.
"""

import pytest
import torch

from faults import CLEAN_VARIANTS, FAULTS, run_fault, run_repro_fault
from voxport.validate.accuracy import record_baseline, run_accuracy

QUICK = {"example_names": ["english"], "locate_ops": False}


def fault(name: str, family: str):
    return next(f for f in FAULTS if f.name == name and f.family == family)


@pytest.mark.parametrize(
    "variant, dtype",
    [(CLEAN_VARIANTS[1], torch.bfloat16), (CLEAN_VARIANTS[3], torch.float16)],
    ids=["csm-bfloat16", "covo-float16"],
)
def test_a_correct_port_with_other_kernels_passes(variant, dtype, request, tmp_path):
    clean = request.getfixturevalue(f"tiny_{variant.family}_dir")
    result = run_fault(variant, clean, tmp_path, dtype, **QUICK)
    assert result["verdict"] == "PASS" and result["first_drift_module"] is None
    # the other kernels really ran: some block's error differs from the benchmark's
    assert any(block["relative_error"] != block["benchmark_relative_error"] for block in result["blocks"])


@pytest.mark.parametrize(
    "planted, dtype",
    [
        (fault("weights Mimi decoder conv", "csm"), torch.bfloat16),
        (fault("KV cache written one row late", "csm"), torch.bfloat16),
        (fault("weights DiT block", "covo"), torch.float16),
        (fault("mel front end in float16", "covo"), torch.bfloat16),
    ],
    ids=lambda value: str(value).split(".")[-1] if isinstance(value, torch.dtype) else f"{value.family}-{value.name}",
)
def test_a_planted_fault_fails_at_its_block(planted, dtype, request, tmp_path):
    clean = request.getfixturevalue(f"tiny_{planted.family}_dir")
    result = run_fault(planted, clean, tmp_path, dtype, **QUICK)
    assert result["verdict"] == "FAIL"
    assert result["first_drift_module"] == planted.block
    named = next(block for block in result["blocks"] if block["module"] == planted.block)
    assert named["verdict"] == "FAIL"


def test_a_shape_change_is_a_fail_naming_the_block_and_op(tiny_covo_dir, tmp_path):
    result = run_fault(
        fault("adapter stride 1 for 2", "covo"), tiny_covo_dir, tmp_path, torch.bfloat16, example_names=["english"]
    )
    assert result["verdict"] == "FAIL" and result["first_drift_module"] == "audio_adapter.downsample_layers.0"
    named = next(block for block in result["blocks"] if block["module"] == "audio_adapter.downsample_layers.0")
    assert "shape" in named["reason"]
    assert any("reason" in entry for name, entry in result["outputs"].items())  # the whole model's outputs too
    op = result["first_diverging_op"]  # the strided convolution makes the other shape: it is the answer
    assert op["block"] == "audio_adapter.downsample_layers.0" and op["op"] == "aten::convolution"
    assert "output shape" in op["reason"] and "benchmark's" in op["reason"]


def test_the_first_diverging_op_is_named(tiny_csm_dir, tmp_path):
    result = run_fault(
        fault("SiLU swapped for GELU", "csm"), tiny_csm_dir, tmp_path, torch.bfloat16, example_names=["english"]
    )
    assert result["first_drift_module"] == "backbone_model.layers.0"
    op = result["first_diverging_op"]
    assert op["block"] == "backbone_model.layers.0" and op["op"] == "aten::gelu"
    assert "aten::silu" in op["reason"]


def test_the_command_exits_3_on_a_fail_and_0_on_a_pass(tiny_csm_dir, tmp_path):
    """Scripts and CI stop on a failed port by the exit code alone; the report is written either way."""
    import json

    from voxport.cli import main

    faulty = fault("weights Mimi decoder conv", "csm").plant(tiny_csm_dir, tmp_path / "faulty")
    quick = ["--dtype", "bfloat16", "--device", "cpu", "--examples", "english", "--no-op-search"]
    report = tmp_path / "faulty.json"
    assert (
        main(
            [
                "accuracy",
                "--model",
                str(faulty),
                "--reference-model",
                str(tiny_csm_dir),
                *quick,
                "--json-out",
                str(report),
            ]
        )
        == 3
    )
    assert json.loads(report.read_text())["verdict"] == "FAIL"
    assert main(["accuracy", "--model", str(tiny_csm_dir), *quick]) == 0


@pytest.mark.parametrize(
    "planted",
    [
        fault("KV cache written one row late", "csm"),
        fault("engine RoPE sign dropped", "csm"),
        fault("KV cache written one row late", "covo"),
        fault("engine RoPE sign dropped", "covo"),
    ],
    ids=lambda value: f"{value.family}-{value.name}",
)
def test_an_engine_fault_fails_repro_in_float32(planted, request, tmp_path):
    """repro teacher-forces and generates through the engine: a fault there fails it, even in float32."""
    clean = request.getfixturevalue(f"tiny_{planted.family}_dir")
    result = run_repro_fault(planted, clean, tmp_path, steps=8)
    assert result["verdict"] == "FAIL", result["problems"]
    assert result["repeat"]["first_divergence"] is None  # the fault is deterministic: the repeats agree


@pytest.mark.parametrize("family", ["csm", "covo"])
def test_a_clean_copy_passes_repro_in_float32(family, request, tmp_path):
    clean = request.getfixturevalue(f"tiny_{family}_dir")
    variant = next(v for v in CLEAN_VARIANTS if v.family == family and v.name == "clean copy")
    result = run_repro_fault(variant, clean, tmp_path, steps=8)
    assert result["verdict"] == "PASS" and result["against_reference"]["token_match_rate"] == 1.0


def test_one_baseline_judges_each_target_as_a_run_of_its_own(tiny_covo_dir, tmp_path):
    """A reference and benchmark recorded once (as tests/fault_table.py does) give each target the verdict and
    numbers a whole run gives it; a baseline of another dtype is refused."""
    baseline = record_baseline(str(tiny_covo_dir), torch.bfloat16, example_names=["english"], progress=lambda _: None)
    for index, planted in enumerate([CLEAN_VARIANTS[3], fault("KV cache written one row late", "covo")]):
        alone = run_fault(planted, tiny_covo_dir, tmp_path / f"alone{index}", torch.bfloat16, **QUICK)
        shared = run_fault(
            planted, tiny_covo_dir, tmp_path / f"shared{index}", torch.bfloat16, baseline=baseline, locate_ops=False
        )
        assert (shared["verdict"], shared["first_drift_module"]) == (alone["verdict"], alone["first_drift_module"])
        assert [block["relative_error"] for block in shared["blocks"]] == pytest.approx(
            [block["relative_error"] for block in alone["blocks"]], rel=1e-6
        )
    assert shared["verdict"] == "FAIL"
    with pytest.raises(ValueError, match="the baseline is .* in bfloat16, not .* in float16"):
        run_accuracy(str(tiny_covo_dir), torch.device("cpu"), torch.float16, baseline=baseline, **QUICK)
