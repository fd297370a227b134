"""Proving a port: metrics, verdicts, accuracy with drift localisation, reproducibility, benchmarks, ops, run-all."""

import json
import math
import mmap
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from voxport.cli import main
from voxport.errors import InputError
from voxport.runtime.bandwidth import published_bandwidth
from voxport.validate import pipeline
from voxport.validate.accuracy import run_accuracy
from voxport.validate.grid import parse_configs
from voxport.validate.metrics import compare
from voxport.validate.ops import KnownGap, OpRecorder, coverage, run_ops
from voxport.validate.performance import bound_fraction, run_benchmark
from voxport.validate.phases import phase
from voxport.validate.reproducibility import run_reproducibility
from voxport.validate.verdicts import FLOORS, Errors, errors, judge

CPU = torch.device("cpu")


def quiet(message):
    pass


def test_metrics_on_known_tensors():
    same = compare(torch.tensor([1.0, -2.0]), torch.tensor([1.0, -2.0]))
    assert same.cosine == pytest.approx(1.0, abs=1e-15)
    assert (same.max_abs, same.mean_abs, same.relative_error, same.within_0_1_percent) == (0, 0, 0, 1)
    result = compare(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 2.0, 3.0, 5.0]))
    assert result.max_abs == 1 and result.mean_abs == 0.25 and result.within_0_1_percent == 0.75
    assert result.relative_error == pytest.approx(1 / math.sqrt(30))
    assert result.cosine == pytest.approx(34 / math.sqrt(30 * 39))
    logits = compare(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.tensor([[0.0, 1.0], [0.0, 3.0]]), logits=True)
    assert logits.top1_agreement == 0.5
    zeros = compare(torch.zeros(3), torch.zeros(3))
    assert zeros.cosine == 1 and zeros.relative_error == 0
    with pytest.raises(ValueError, match="shapes differ"):
        compare(torch.zeros(3), torch.zeros(4))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS")
def test_each_phase_has_its_own_peak_memory():
    phases = {}
    with phase("large", phases):
        with mmap.mmap(-1, 2**26) as block:  # 64 MiB of fresh pages, written: whatever the allocator keeps
            block.write(b"\x01" * 2**26)
    with phase("small", phases):
        pass
    assert phases["large"]["peak_rss_bytes"] - phases["small"]["peak_rss_bytes"] > 2**25


def test_verdicts_judge_the_error_against_the_benchmarks():
    benchmark = Errors(relative=0.01, max_relative=0.05)
    assert judge(Errors(0.011, 0.06), benchmark, torch.bfloat16)["verdict"] == "PASS"
    assert judge(Errors(0.02, 0.06), benchmark, torch.bfloat16)["verdict"] == "WARN"
    assert judge(Errors(0.05, 0.06), benchmark, torch.bfloat16)["verdict"] == "FAIL"
    assert judge(Errors(0.011, 1.0), benchmark, torch.bfloat16)["verdict"] == "FAIL"  # one element far off
    exact = Errors(0.0, 0.0)  # a float32 benchmark: the target must be within the float32 floor
    assert judge(Errors(FLOORS[torch.float32] / 2, 0.0), exact, torch.float32)["verdict"] == "PASS"
    assert judge(Errors(0.01, 0.01), exact, torch.float32)["verdict"] == "FAIL"
    broken = judge(errors(torch.ones(4), torch.tensor([1.0, float("nan"), 1.0, 1.0])), benchmark, torch.bfloat16)
    assert broken["verdict"] == "FAIL" and "NaN" in broken["reason"]
    masked = torch.tensor([0.0, float("-inf")])  # infinities the reference has too are agreement
    assert errors(masked, masked.clone()).relative == 0.0
    with pytest.raises(ValueError, match="shape"):
        errors(torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("checkpoint", ["tiny_csm_dir", "tiny_covo_dir"])
def test_accuracy_covers_every_stage_and_passes_clean(checkpoint, request, tmp_path):
    clean = request.getfixturevalue(checkpoint)
    copy = shutil.copytree(clean, tmp_path / "copy")  # a checkpoint copy: the target runs apart from the benchmark
    bars = []

    @contextmanager
    def bar(total, unit, label):
        seen = bars.append([label, total, 0]) or bars[-1]
        yield lambda done: seen.__setitem__(2, done)

    result = run_accuracy(
        str(copy), CPU, torch.bfloat16, reference_source=str(clean), example_names=["english"], progress=quiet, bar=bar
    )
    assert result["verdict"] == "PASS" and result["first_drift_module"] is None
    blocks = len(result["blocks"])  # every block and stage of the one example, each replayed once per pass
    assert bars == [["benchmark", blocks, blocks], ["target", blocks, blocks]]
    assert list(result["phases"]) == ["reference", "benchmark", "target"]
    assert all(entry["seconds"] > 0 and entry["peak_rss_bytes"] > 2**20 for entry in result["phases"].values())
    assert result["examples"] == {"english": {"verdict": "PASS", "first_drift_module": None}}
    stages = {block["stage"] for block in result["blocks"]}
    expected = (
        {"backbone_model", "depth_decoder", "engine", "codec_model.quantizer", "codec_model.decoder"}
        if checkpoint == "tiny_csm_dir"
        else {"mel", "encoder", "audio_adapter", "llm", "generation", "token2latent", "wavegan"}
    )
    assert stages == expected
    modules = {block["module"] for block in result["blocks"]}
    assert (
        {
            "backbone_model.layers.1",
            "depth_decoder.model.layers.0",
            "codec_model.decoder.layers.3",
            "codec_model.decoder_transformer.layers.0",
        }
        if checkpoint == "tiny_csm_dir"
        else {
            "encoder.layers.0",
            "llm.model.layers.1",
            "token2latent.blocks.1",
            "wavegan.resblocks.0",
            "audio_adapter.downsample_layers.0",
        }
    ) <= modules
    # bfloat16 really ran: low-precision error in the half-precision blocks, the benchmark's own
    assert max(block["relative_error"] for block in result["blocks"]) > 1e-3
    assert all(block["relative_error"] == block["benchmark_relative_error"] for block in result["blocks"])


def test_default_examples_include_chinese_and_a_long_one(tiny_csm, tiny_covo):
    assert set(tiny_csm.accuracy_examples()) == set(tiny_covo.accuracy_examples()) == {"english", "chinese", "long"}
    assert "移植" in tiny_csm.accuracy_examples()["chinese"].request.text
    assert "今天" in tiny_covo.accuracy_examples()["chinese"].replies[0]
    frames = tiny_csm.accuracy_examples()["long"].codes.shape[0]
    assert frames >= 64
    long = tiny_covo.accuracy_examples()["long"]
    llm = next(stage for stage in tiny_covo.accuracy_stages(long) if stage.name == "llm")
    assert llm.inputs["ids"].shape[1] >= 300


def test_reproducibility_on_cpu(tiny_csm_dir):
    result = run_reproducibility(str(tiny_csm_dir), CPU, torch.float32, steps=6, progress=quiet)
    assert result["verdict"] == "PASS" and result["problems"] == []
    assert result["repeat"] == {
        "token_match_rate": 1.0,
        "first_divergence": None,
        "sampled_token_match_rate": 1.0,
        "sampled_first_divergence": None,
        "identical_audio": True,
    }
    assert result["against_reference"]["greedy_parts_at_step"] is None
    assert result["against_reference"]["sampled_parts_at_step"] is None
    assert result["against_reference"]["token_match_rate"] == 1.0
    assert result["against_reference"]["agree_until_step"] is None
    assert result["against_reference"]["steps_in_top_k"] == 6 and result["step_unit"] == "frame"


def test_reproducibility_reports_a_target_that_drifts(tiny_csm_dir, monkeypatch):
    """A second greedy run that changes from frame 3 on is reported as such (the check can fail)."""
    from voxport.models.csm import CsmSpeech

    greedy, calls = CsmSpeech.greedy_tokens, []

    def drifting(self, inputs, steps):
        tokens = greedy(self, inputs, steps)
        calls.append(steps)
        if len(calls) == 3:  # the reference's run, the target's first, then its second
            tokens = tokens.clone()
            tokens[3:, 5] = (tokens[3:, 5] + 1) % 2048
        return tokens

    monkeypatch.setattr(CsmSpeech, "greedy_tokens", drifting)
    result = run_reproducibility(str(tiny_csm_dir), CPU, torch.float32, steps=6, progress=quiet)
    assert result["repeat"]["token_match_rate"] == 0.5 and result["repeat"]["first_divergence"] == 3
    assert result["against_reference"]["token_match_rate"] == 1.0 and len(calls) == 3


def test_reproducibility_of_text_tokens(tiny_covo_dir):
    result = run_reproducibility(str(tiny_covo_dir), CPU, torch.bfloat16, steps=6, progress=quiet)
    assert result["repeat"]["token_match_rate"] == 1.0 and result["repeat"]["identical_audio"] is None
    assert result["step_unit"] == "token"


def test_benchmark_has_every_field(tiny_csm_dir):
    result = run_benchmark(
        str(tiny_csm_dir),
        CPU,
        torch.float32,
        parse_configs("short_4t,medium_6t"),
        iterations=2,
        bandwidth=50e9,
        progress=quiet,
    )
    load = result["load_breakdown_seconds"]
    assert {"import", "tokenizer_and_processor", "weights", "other", "first_call"} <= set(load)
    assert result["total_load_seconds"] == pytest.approx(sum(load.values())) and min(load.values()) >= 0
    assert result["weight_bytes_per_step"] > 0
    assert result["bandwidth_bytes_per_second"] == 50e9 and result["bandwidth_source"] == "given"
    assert [entry["config"] for entry in result["configs"]] == ["short_4t", "medium_6t"]
    for entry in result["configs"]:
        for field in [
            "latency_mean_seconds",
            "latency_p50_seconds",
            "latency_p90_seconds",
            "steps_per_second",
            "rtf",
            "real_time_multiple",
            "peak_process_rss_bytes",
            "bound_step_seconds",
        ]:
            assert entry[field] > 0, field
        assert entry["bytes_read_per_step"] == result["weight_bytes_per_step"]
        assert entry["bound_step_seconds"] == pytest.approx(result["weight_bytes_per_step"] / 50e9)
        if entry["step_seconds"] is not None:  # None only where timing noise swamps a tiny model's steps
            assert entry["bound_fraction"] == pytest.approx(entry["bound_step_seconds"] / entry["step_seconds"])
        assert entry["audio_seconds"] == pytest.approx(entry["steps"] * 0.08)
        assert entry["rtf"] == pytest.approx(1 / entry["real_time_multiple"])
        assert entry["peak_allocated_bytes"] is None  # no device allocator on the CPU: RSS is the measure


def test_bound_fraction_is_bound_seconds_over_measured_seconds():
    # 4 steps of 2 GB at 10 GB/s are bound by 0.8 s: measured in 1.0 s that is 0.8 of the bound's speed.
    assert bound_fraction(4, 1.0, 2_000_000_000, 10e9) == pytest.approx(0.8)
    assert bound_fraction(4, 1.0, 2_000_000_000, None) is None and bound_fraction(4, 0.0, 1, 1.0) is None


def test_benchmark_configs_and_bandwidth_table():
    assert parse_configs("short_32t, long_512t") == [("short_32t", "short", 32), ("long_512t", "long", 512)]
    for bad in ["tiny_32t", "short_32", "short_0t", ""]:
        with pytest.raises(InputError):
            parse_configs(bad)
    assert published_bandwidth("NVIDIA H200") == 4.8e12 and published_bandwidth("Ascend910B2") == 1.6e12
    assert published_bandwidth("NVIDIA A100-SXM4-80GB") == 2.039e12 and published_bandwidth("x86_64") is None


def test_ops_lists_the_stft_and_complex_ops_of_covo(tiny_covo_dir):
    result = run_ops(str(tiny_covo_dir), CPU, torch.bfloat16, "npu", progress=quiet)
    names = {op["op"] for op in result["ops"]}
    assert {"aten::stft", "aten::_fft_r2c", "aten::view_as_real"} <= names
    fft = next(op for op in result["ops"] if op["op"] == "aten::_fft_r2c")
    assert fft["input_dtypes"] == ["float32"] and fft["output_dtypes"] == ["complex64"]
    assert result["gaps_hit"] == []  # voxport's front end already avoids the Ascend gaps
    assert {gap["ops"][0] for gap in result["known_gaps"]} >= {"aten::abs", "aten::_fft_r2c"}
    assert result["distinct_ops"] > 20 and all(op["calls"] > 0 for op in result["ops"])


def test_known_gaps_catch_a_naive_front_end():
    with OpRecorder() as recorder:
        spectrum = torch.stft(
            torch.randn(4000, dtype=torch.float64),
            400,
            160,
            window=torch.hann_window(400, dtype=torch.float64),
            return_complex=True,
        )
        spectrum.abs()
    report = coverage(recorder, "npu")
    assert "aten::abs" in report["gaps_hit"] and "aten::_fft_r2c" in report["gaps_hit"]
    assert coverage(recorder, "mps")["gaps_hit"]  # float64 everywhere
    assert KnownGap("npu", ("aten::cos",), "int64", "", "").hits("aten::cos", ("int64",))


def test_cpu_kernels_are_found(tiny_csm_dir):
    result = run_ops(str(tiny_csm_dir), CPU, torch.float32, "cpu", replay_device=CPU, progress=quiet)
    assert result["backend_installed"] and result["missing_kernels"] == []
    assert all(op["kernel"] is True for op in result["ops"])
    assert result["replay"]["ops_compared"] > 10
    assert result["replay"]["verdict"] == "PASS"
    assert all(entry.get("relative_error", 0.0) < 1e-5 for entry in result["replay"]["worst"])  # float32 vs float32
    assert "aten::convolution" in {op["op"] for op in result["ops"]}  # the codec was traced (only it convolves)


def test_ops_exits_3_when_its_replay_fails(tiny_csm_dir, monkeypatch, capsys):
    """The replay's verdict is the command's: a CI job stops on an op the target computes wrongly."""
    from voxport.validate import ops

    argv = ["ops", "--model", str(tiny_csm_dir), "--device", "cpu", "--dtype", "float32", "--check-accuracy"]
    assert main(argv) == 0
    replay = ops.replay_accuracy

    def one_op_wrong(recorder, device, worst=10):
        result = replay(recorder, device, worst)
        wrong = {**result["worst"][0], "verdict": "FAIL", "reason": "differs from the CPU's output in the same dtypes"}
        return {**result, "verdict": "FAIL", "failed": [wrong]}

    monkeypatch.setattr(ops, "replay_accuracy", one_op_wrong)
    assert main(argv) == 3
    assert "verdict **FAIL**" in capsys.readouterr().out


def test_run_all_writes_every_file(tiny_csm_dir, tmp_path):
    summary = pipeline.run_all(
        str(tiny_csm_dir),
        CPU,
        torch.bfloat16,
        tmp_path / "report",
        parse_configs("short_4t"),
        iterations=1,
        steps=4,
        progress=quiet,
    )
    out = summary.parent
    for name in ["accuracy.json", "reproducibility.json", "performance.json", "ops.json"]:
        data = json.loads((out / name).read_text())
        assert "error" not in data and data["environment"]["torch"] == torch.__version__
    for name in ["drift.png", "performance.png", "memory.png"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = summary.read_text()
    for section in [
        "## Accuracy against CPU float32",
        "## Reproducibility",
        "## Performance",
        "## Operator coverage",
        "## Plots",
        "## Environment",
        "![per-block drift](drift.png)",
    ]:
        assert section in text


def test_a_failing_stage_keeps_the_others(tiny_csm_dir, tmp_path, monkeypatch):
    def broken_benchmark(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(pipeline, "run_benchmark", broken_benchmark)
    summary = pipeline.run_all(
        str(tiny_csm_dir),
        CPU,
        torch.float32,
        tmp_path / "report",
        parse_configs("short_4t"),
        iterations=1,
        steps=3,
        progress=quiet,
    )
    assert json.loads((summary.parent / "performance.json").read_text())["error"] == "RuntimeError: device lost"
    assert json.loads((summary.parent / "accuracy.json").read_text())["verdict"] == "PASS"
    assert not (summary.parent / "performance.png").exists()
    assert "**Did not complete:** RuntimeError: device lost" in summary.read_text()


def test_validation_cli_prints_tables(tiny_covo_dir, tmp_path, capsys):
    out = tmp_path / "repro.json"
    assert main(["repro", "--model", str(tiny_covo_dir), "--steps", "3", "--json-out", str(out)]) == 0
    assert "| same greedy tokens twice | 100.0% (first divergence: none) |" in capsys.readouterr().out
    assert json.loads(out.read_text())["steps"] == 3


@pytest.mark.parametrize(
    "case", ["unknown config", "absent device", "unknown model", "out is a file", "json-out unwritable", "audio absent"]
)
def test_validation_bad_input_is_one_clear_line(case, tiny_csm_dir, tmp_path, capsys):
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    taken = tmp_path / "taken"
    taken.write_text("a file")
    model = ["--model", str(tiny_csm_dir)]
    argv, expected = {
        "unknown config": (["bench", *model, "--configs", "short_32t,huge_9t"], "unknown benchmark config 'huge_9t'"),
        "absent device": (["accuracy", *model, "--device", "npu:1"], "device 'npu:1' is not available"),
        "unknown model": (["repro", "--model", str(other)], "'bert' model, which voxport cannot handle"),
        "out is a file": (["run-all", *model, "--out", str(taken)], "is a file: expected a directory"),
        "json-out unwritable": (["bench", *model, "--json-out", str(tmp_path / "no" / "b.json")], "does not exist"),
        "audio absent": (
            ["accuracy", *model, "--audio", str(tmp_path / "nonexistent.wav")],
            "nonexistent.wav is not a file: expected a speech recording",
        ),
    }[case]
    assert main(argv) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert expected in errors[-1] and errors[-1].startswith("voxport: error:")
