"""The `voxport` command: end to end in a subprocess, and every bad input in-process (same code path)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import shared_data
from test_checkpoints import put_in_hub_cache
from voxport.cli import main


def voxport(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "voxport", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=600,
    )


def test_make_tiny_then_tts_end_to_end(tmp_path):
    checkpoint, output, codes = tmp_path / "tiny", tmp_path / "hello.wav", tmp_path / "codes.npy"
    made = voxport("make-tiny", "csm", checkpoint, "--seed", "3")
    assert made.returncode == 0, made.stderr
    assert (checkpoint / "model.safetensors").is_file()
    run = voxport(
        "tts",
        "Hello from the command line.",
        "--model",
        checkpoint,
        "--output",
        output,
        "--max-tokens",
        6,
        "--seed",
        11,
        "--codes-out",
        codes,
        "--json",
        "--device",
        "cpu",
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["output"] == str(output) and report["frames"] == 6 and report["sample_rate"] == 24000
    assert report["device"] == "cpu" and report["dtype"] == "float32" and report["seed"] == 11
    assert report["device_name"].endswith("cores)") and report["bandwidth_source"] == "probe"  # beside the run
    assert report["bytes_read"] > 6 * report["bytes_read_per_step"]  # and the prompt's prefill
    assert report["bound_fraction"] == pytest.approx(
        report["bytes_read"] / report["bandwidth_bytes_per_second"] / report["generation_seconds"]
    )
    assert report["rtf"] == pytest.approx(
        (report["prompt_seconds"] + report["generation_seconds"] + report["decode_seconds"]) / report["audio_seconds"]
    )
    samples, rate = sf.read(output)
    assert rate == 24000 and len(samples) == 6 * 1920 and report["audio_seconds"] == pytest.approx(0.48)
    saved = np.load(codes)
    assert saved.shape == (6, 32) and saved.dtype == np.int64 and saved.max() < 2048


def test_tts_summary_and_context_with_real_speech(tiny_csm_dir, tmp_path, capsys):
    clip = shared_data("003000297.wav")
    output = tmp_path / "reply.wav"
    code = main(
        [
            "tts",
            "Nice to meet you.",
            "--model",
            str(tiny_csm_dir),
            "-o",
            str(output),
            "--max-tokens",
            "4",
            "--seed",
            "1",
            "--context",
            f"1:Hello, how are you: fine?:{clip}",
            "--speaker",
            "0",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {output}: 0.32 s of audio (4 frames)" in printed and "RTF" in printed and "seed 1" in printed
    assert sf.info(output).frames == 4 * 1920


def test_hub_id_resolves_from_the_offline_cache(tiny_csm_dir, tmp_path):
    put_in_hub_cache(tiny_csm_dir, tmp_path / "hub", "someone/tiny-csm")
    output = tmp_path / "cached.wav"
    run = voxport(
        "tts",
        "From the cache.",
        "--model",
        "someone/tiny-csm",
        "-o",
        output,
        "--max-tokens",
        2,
        "--json",
        env={"HF_HUB_CACHE": str(tmp_path / "hub")},
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["frames"] == 2 and output.is_file()


def test_help_explains_every_option():
    run = voxport("tts", "--help")
    assert run.returncode == 0
    for option in [
        "--model",
        "--output",
        "--speaker",
        "--context",
        "--max-tokens",
        "--min-tokens",
        "--temperature",
        "--top-k",
        "--seed",
        "--greedy",
        "--compile",
        "--device",
        "--dtype",
        "--codes-out",
        "--json",
    ]:
        assert option in run.stdout


def bad_input_cases(tmp_path, tiny_csm_dir):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("plain text")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{ not json")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for item in tiny_csm_dir.iterdir():
        data = item.read_bytes()
        (truncated / item.name).write_bytes(data[: len(data) // 2] if item.suffix == ".safetensors" else data)
    model = ["--model", str(tiny_csm_dir)]
    return {
        "empty text": (["tts", "   ", *model], "text is empty"),
        "unknown device": (["tts", "hi", *model, "--device", "tpu"], "unknown device 'tpu'"),
        "absent device": (["tts", "hi", *model, "--device", "xpu:3"], "device 'xpu:3' is not available"),
        "missing model": (["tts", "hi", "--model", str(tmp_path / "nowhere")], "does not exist"),
        "corrupt config": (["tts", "hi", "--model", str(corrupt)], "cannot read"),
        "truncated weights": (["tts", "hi", "--model", str(truncated)], "cannot load CSM checkpoint"),
        "offline hub id": (["tts", "hi", "--model", "nobody/not-cached"], "not in the Hugging Face cache"),
        "unreadable context": (
            ["tts", "hi", *model, "--context", f"0:Before.:{not_audio}"],
            "is not audio soundfile can read",
        ),
        "missing context": (["tts", "hi", *model, "--context", f"0:Before.:{tmp_path / 'no.wav'}"], "does not exist"),
        "malformed context": (["tts", "hi", *model, "--context", "Before.wav"], "expected SPK:TEXT:AUDIO"),
        "zero max tokens": (["tts", "hi", *model, "--max-tokens", "0"], "--max-tokens: expected a positive"),
        "negative max tokens": (["tts", "hi", *model, "--max-tokens", "-4"], "--max-tokens: expected a positive"),
        "negative temperature": (["tts", "hi", *model, "--temperature", "-1"], "--temperature: expected 0 (greedy)"),
        "NaN temperature": (["tts", "hi", *model, "--temperature", "nan"], "--temperature: expected 0 (greedy)"),
        "unwritable output": (["tts", "hi", *model, "-o", str(not_audio / "out.wav")], "is not a directory"),
        "output is a directory": (["tts", "hi", *model, "-o", str(tmp_path)], "is a directory"),
        "unknown family": (["make-tiny", "whisper", str(tmp_path / "x")], "invalid choice"),
        "output in /proc": (["tts", "hi", *model, "-o", "/proc/x.wav"], "output /proc/x.wav cannot be written"),
        **{
            f"{kind} context": (["tts", "hi", *model, "--context", f"0:Before.:{path}"], message)
            for kind, (path, message) in bad_audio(tmp_path).items()
        },
    }


def bad_audio(tmp_path):
    """Audio files the input policy refuses, and what the refusal says."""
    rate = 24000
    tone = (0.3 * np.sin(np.arange(rate) / rate * 2 * np.pi * 220)).astype(np.float32)
    with_nan = tone.copy()
    with_nan[1000] = np.nan
    sf.write(tmp_path / "nan.wav", with_nan, rate, subtype="FLOAT")
    sf.write(tmp_path / "whole.wav", tone, rate, subtype="PCM_16")
    whole = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) // 2])
    sf.write(tmp_path / "short.wav", tone[: rate // 100], rate)
    sf.write(tmp_path / "silent.wav", np.zeros(rate, dtype=np.float32), rate)
    return {
        "NaN": (tmp_path / "nan.wav", "nan.wav has 1 non-finite samples (NaN or infinity): expected finite audio"),
        "truncated": (tmp_path / "cut.wav", "cut.wav is truncated: its header promises 48000 bytes of audio"),
        "10 ms": (tmp_path / "short.wav", "short.wav lasts 10 ms: expected at least 0.1 s"),
        "silent": (tmp_path / "silent.wav", "silent.wav is silent (peak below -80 dBFS): expected speech"),
    }


BAD_INPUTS = [
    "empty text",
    "unknown device",
    "absent device",
    "missing model",
    "corrupt config",
    "truncated weights",
    "offline hub id",
    "unreadable context",
    "missing context",
    "malformed context",
    "zero max tokens",
    "negative max tokens",
    "negative temperature",
    "NaN temperature",
    "unwritable output",
    "output is a directory",
    "unknown family",
    "output in /proc",
    "NaN context",
    "truncated context",
    "10 ms context",
    "silent context",
]


@pytest.mark.parametrize("kind", ["NaN", "truncated", "10 ms", "silent"])
def test_chat_refuses_bad_audio_before_loading_a_model(kind, tmp_path, capsys):
    path, message = bad_audio(tmp_path)[kind]
    assert main(["chat", "--audio", str(path), "--model", str(tmp_path / "no-model-needed")]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"voxport: error: audio file {tmp_path}/{message}")


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_clear_line(case, tmp_path, tiny_csm_dir, capsys):
    argv, expected = bad_input_cases(tmp_path, tiny_csm_dir)[case]
    before = set(tmp_path.rglob("*"))
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    errors = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert expected in errors[-1] and "Traceback" not in "\n".join(errors)
    assert errors[-1].startswith(("voxport: error:", "voxport tts: error:", "voxport make-tiny: error:"))
    assert set(tmp_path.rglob("*")) == before  # nothing written, not even a partial file


@pytest.mark.parametrize("flag", ["--max-seconds", "--max-audio-mb"])
@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf"])
def test_serve_refuses_a_limit_that_is_not_a_positive_number(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--model", "tts=unused", flag, value])
    assert exit_.value.code == 2 and "expected a positive number" in capsys.readouterr().err
