"""Families from outside: a package of its own (tests/plugins/voxport_toys) declares two families through the
`voxport.models` entry points, one that speaks text at 16 kHz and one that answers audio, and every door
serves them with no line of voxport naming them: the CLI, `voxport batch` on Ray, HTTP with the openai SDK,
accuracy and bench."""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import openai
import pytest
import soundfile as sf

from voxport.cli import main
from voxport.models.registry import families

SRC = Path(__file__).resolve().parents[1] / "src" / "voxport"
NAMES = ("toyspeech", "toychat", "toy_speech", "toy_chat", "voxport_toys")
RATE = 16000


@pytest.fixture(scope="module")
def toys(tmp_path_factory) -> dict[str, Path]:
    """Both toy checkpoints, written by `voxport make-tiny` through the registry."""
    root = tmp_path_factory.mktemp("toys")
    for family in ("toyspeech", "toychat"):
        assert main(["make-tiny", family, str(root / family)]) == 0
    return {family: root / family for family in ("toyspeech", "toychat")}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    t = np.arange(RATE) / RATE
    path = tmp_path_factory.mktemp("clip") / "question.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32), RATE)
    return path


def test_no_line_of_voxport_names_them():
    assert {"toyspeech", "toychat"} <= set(families())
    for path in SRC.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".toml", ".txt", ".md"):
            text = path.read_text(encoding="utf-8")
            assert not [name for name in NAMES if name in text], path


def test_the_cli_speaks_and_chats_with_them(toys, clip, tmp_path, capsys):
    out = tmp_path / "hello.wav"
    assert (
        main(
            [
                "tts",
                "Hello from outside.",
                "--model",
                str(toys["toyspeech"]),
                "--device",
                "cpu",
                "--seed",
                "3",
                "-o",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    samples, rate = sf.read(out)
    assert rate == report["sample_rate"] == RATE and len(samples) == report["frames"] * 1600 > 0
    assert (
        main(
            [
                "chat",
                "--model",
                str(toys["toychat"]),
                "--audio",
                str(clip),
                "--audio",
                str(clip),
                "--mode",
                "a2ta",
                "--output-dir",
                str(tmp_path / "replies"),
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    chat = json.loads(capsys.readouterr().out)
    assert len(chat["rounds"]) == 2 and all(
        set(turn["text"]) <= set("abcdefghijklmnopqrstuvwxyz") for turn in chat["rounds"]
    )
    assert sf.info(tmp_path / "replies" / "turn_0.wav").samplerate == RATE
    assert main(["tts", "Hi.", "--model", str(toys["toychat"]), "--device", "cpu"]) == 1
    assert "cannot do this: expected a model that speaks text" in capsys.readouterr().err


def test_voxport_batch_runs_them_on_ray(ray_runtime, toys, clip, tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"id": "a", "text": "One row.", "seed": 1})
        + "\n"
        + json.dumps({"id": "b", "text": "Another row, a little longer.", "seed": 2})
        + "\n"
    )
    assert (
        main(
            [
                "batch",
                "tts",
                str(rows),
                "--model",
                str(toys["toyspeech"]),
                "--output-dir",
                str(tmp_path / "speech"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert sf.info(tmp_path / "speech" / "b.wav").samplerate == RATE
    clips = tmp_path / "clips.jsonl"
    clips.write_text(json.dumps({"id": "q", "audio": str(clip), "seed": 4}) + "\n")
    assert (
        main(
            [
                "batch",
                "chat",
                str(clips),
                "--model",
                str(toys["toychat"]),
                "--output-dir",
                str(tmp_path / "chat"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (tmp_path / "chat" / "q.txt").read_text().strip().isalpha()
    capsys.readouterr()


def test_http_serves_them_to_the_openai_sdk(toys, clip):
    from serving import Server

    server = Server("--model", f"speech={toys['toyspeech']}", "--model", f"chat={toys['toychat']}")
    try:
        client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)
        assert {(model.id, model.capabilities[0]) for model in client.models.list().data} == {
            ("speech", "speech"),
            ("chat", "audio_chat"),
        }
        audio = client.audio.speech.create(
            model="speech", voice="alloy", input="Over HTTP.", response_format="wav", extra_body={"seed": 3}
        )
        samples, rate = sf.read(io.BytesIO(audio.content))
        assert rate == RATE and len(samples) > 0
        question = base64.b64encode(clip.read_bytes()).decode()
        reply = client.chat.completions.create(
            model="chat",
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
            seed=4,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": question, "format": "wav"}}],
                }
            ],
        )
        message = reply.choices[0].message
        assert message.content.isalpha() and message.audio.transcript == message.content
        assert sf.info(io.BytesIO(base64.b64decode(message.audio.data))).samplerate == RATE
    finally:
        server.stop()


@pytest.mark.parametrize("family", ["toyspeech", "toychat"])
def test_accuracy_and_bench_judge_them(toys, family, tmp_path):
    accuracy = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxport",
            "accuracy",
            "--model",
            str(toys[family]),
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--json-out",
            str(tmp_path / "a.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert accuracy.returncode in (0, 3), accuracy.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["verdict"] in ("PASS", "WARN", "FAIL") and report["blocks"]
    bench = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxport",
            "bench",
            "--model",
            str(toys[family]),
            "--device",
            "cpu",
            "--configs",
            "short_4t",
            "--iterations",
            "1",
            "--json-out",
            str(tmp_path / "b.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bench.returncode == 0, bench.stderr
    configs = json.loads((tmp_path / "b.json").read_text())["configs"]
    assert configs[0]["steps"] == 4 and configs[0]["latency_mean_seconds"] > 0
