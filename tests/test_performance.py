"""Performance plumbing: the device name of a CPU, the bandwidth probe and its cache, each model's stages."""

import json
import math
import os
from pathlib import Path

import pytest
import torch

from voxport.runtime import bandwidth
from voxport.runtime.devices import backend_for

CPU = torch.device("cpu")


def test_cpu_device_name_is_its_model_and_usable_cores():
    name = backend_for(CPU).device_name(CPU)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        if models:
            assert name.startswith(models[0])
    assert name.endswith(f"({len(os.sched_getaffinity(0))} cores)")


def test_probe_measures_a_finite_positive_bandwidth():
    measured = bandwidth.probe_bandwidth(CPU, size_bytes=8 * 2**20)
    assert math.isfinite(measured) and measured > 1e8  # any machine reads faster than 100 MB/s


def test_bandwidth_is_given_else_published_else_probed_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXPORT_CACHE_DIR", str(tmp_path))
    probes = []
    monkeypatch.setattr(bandwidth, "probe_bandwidth", lambda device: probes.append(device) or 12.5e9)
    assert bandwidth.memory_bandwidth(CPU, given=3e9) == bandwidth.Bandwidth(3e9, "given")
    assert bandwidth.memory_bandwidth(CPU) == bandwidth.Bandwidth(12.5e9, "probe")
    assert bandwidth.memory_bandwidth(CPU) == bandwidth.Bandwidth(12.5e9, "cached probe") and len(probes) == 1
    assert (tmp_path / bandwidth.CACHE_FILE).is_file()
    assert bandwidth.memory_bandwidth(CPU, remeasure=True).source == "probe" and len(probes) == 2
    monkeypatch.setattr(backend_for(CPU).__class__, "device_name", lambda self, device: "NVIDIA H200")
    assert bandwidth.memory_bandwidth(CPU) == bandwidth.Bandwidth(4.8e12, "published") and len(probes) == 2


def test_a_fresh_probe_ignores_the_cache_and_updates_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXPORT_CACHE_DIR", str(tmp_path))
    rates = iter([12e9, 20e9])
    monkeypatch.setattr(bandwidth, "probe_bandwidth", lambda device: next(rates))
    assert bandwidth.memory_bandwidth(CPU).bytes_per_second == 12e9
    assert bandwidth.memory_bandwidth(CPU, fresh=True) == bandwidth.Bandwidth(20e9, "probe")
    assert bandwidth.memory_bandwidth(CPU) == bandwidth.Bandwidth(20e9, "cached probe")


def test_probe_counts_the_fastest_kernel_the_engines_may_use(monkeypatch):
    """The bound must hold for the engines' own linear kernel: the probe times it, and the fastest rate wins."""
    called = []
    kernel = backend_for(CPU).linear_kernel(torch.float32)
    monkeypatch.setattr(
        backend_for(CPU).__class__,
        "linear_kernel",
        lambda self, dtype: lambda *args: called.append(args[1].shape) or kernel(*args),
    )
    rates = iter([3e9, 9e9, 5e9, 4e9])

    def rate_of(product, *rest):
        product()
        return next(rates)

    monkeypatch.setattr(bandwidth, "_median_rate", rate_of)
    assert bandwidth.probe_bandwidth(CPU, size_bytes=2**20) == 9e9
    assert len(called) == len(bandwidth.PROBE_COLUMNS)  # once per matrix shape


def test_unwritable_cache_only_means_probing_again(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("VOXPORT_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be created
    monkeypatch.setattr(bandwidth, "probe_bandwidth", lambda device: 7e9)
    assert bandwidth.memory_bandwidth(CPU).source == "probe" and bandwidth.memory_bandwidth(CPU).source == "probe"


def test_covo_stages_cover_the_whole_reply(tiny_covo):
    stages = tiny_covo.stage_timings(tiny_covo.bench_inputs("short"), speech_codes=10)
    assert stages["input_audio_seconds"] == pytest.approx(3.0, abs=0.02)
    assert stages["prefill_tokens"] > stages["input_audio_seconds"] * 6  # 6.25 audio features a second, plus text
    for key in [
        "front_end_seconds_per_audio_second",
        "encoder_seconds_per_audio_second",
        "prefill_tokens_per_second",
        "token2wav_dit_rtf",
        "token2wav_vocoder_rtf",
        "first_reply_token_seconds",
    ]:
        assert stages[key] > 0, key
    assert stages["token2wav_speech_seconds"] == pytest.approx(10 / 25, rel=0.1)
    assert stages["first_reply_audio_seconds"] > stages["first_reply_token_seconds"]
    assert "token2wav" in tiny_covo.load_timings


def test_csm_stages_time_the_stream_and_the_codec(tiny_csm):
    stages = tiny_csm.stage_timings(tiny_csm.bench_inputs("short"), frames=6)
    assert 0 < stages["first_audio_seconds"] <= stages["stream_seconds"]
    assert stages["codec_decode_seconds_per_audio_second"] > 0 and stages["stream_frames"] == 6


def test_a_probed_bound_takes_the_faster_of_two_probes(monkeypatch):
    monkeypatch.setattr(bandwidth, "probe_bandwidth", lambda device: 30e9)
    slow, fast = bandwidth.Bandwidth(20e9, "cached probe"), bandwidth.Bandwidth(40e9, "probe")
    assert bandwidth.faster_of_another_probe(CPU, slow) == bandwidth.Bandwidth(30e9, "probe", (20e9, 30e9))
    assert bandwidth.faster_of_another_probe(CPU, fast) == bandwidth.Bandwidth(40e9, "probe", (40e9, 30e9))
    for fixed in (bandwidth.Bandwidth(5e9, "given"), bandwidth.Bandwidth(4.8e12, "published")):
        assert bandwidth.faster_of_another_probe(CPU, fixed) == fixed


@pytest.mark.parametrize("before, after", [(20e9, 30e9), (30e9, 20e9)])
def test_tts_bounds_its_run_by_the_faster_of_probes_before_and_after(
    before, after, tiny_csm_dir, tmp_path, monkeypatch, capsys
):
    """One probe at a slow moment would flatter the run (a fraction above 1 was seen on a shared machine)."""
    from voxport.cli import main

    rates = iter([before, after, before, after])
    monkeypatch.setattr(bandwidth, "probe_bandwidth", lambda device: next(rates))
    monkeypatch.setenv("VOXPORT_CACHE_DIR", str(tmp_path))
    command = [
        "tts",
        "Two probes.",
        "--model",
        str(tiny_csm_dir),
        "-o",
        str(tmp_path / "p.wav"),
        "--max-tokens",
        "2",
        "--device",
        "cpu",
    ]
    assert main([*command, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bandwidth_bytes_per_second"] == 30e9 and report["bandwidth_source"] == "probe"
    assert report["bandwidth_probes_bytes_per_second"] == [before, after]  # the drift, for the reader to judge
    assert report["bound_fraction"] == pytest.approx(report["bytes_read"] / 30e9 / report["generation_seconds"])
    assert main(command) == 0
    assert f"(probed {before / 1e9:.1f} and {after / 1e9:.1f} GB/s)" in capsys.readouterr().out


def test_bench_reports_both_probes_and_its_summary_names_them(tiny_csm_dir, tmp_path, monkeypatch):
    from voxport.validate.grid import parse_configs
    from voxport.validate.performance import run_benchmark
    from voxport.validate.report import performance_table
    from voxport.validate.reports import PerformanceReport

    rates = iter([20e9, 30e9])
    monkeypatch.setattr(bandwidth, "probe_bandwidth", lambda device: next(rates))
    monkeypatch.setenv("VOXPORT_CACHE_DIR", str(tmp_path))
    result = run_benchmark(
        str(tiny_csm_dir), CPU, torch.float32, parse_configs("short_4t"), iterations=1, progress=lambda message: None
    )
    assert result["bandwidth_bytes_per_second"] == 30e9 and result["bandwidth_probes_bytes_per_second"] == [20e9, 30e9]
    table = performance_table(PerformanceReport.model_validate(result))
    assert "30.0 GB/s (probe; the faster of 20.0 and 30.0 GB/s)" in "\n".join(table)
