"""voxport batch and run-all --targets on an embedded Ray runtime shared by this module (2 CPUs, 2 workers)."""

import json
import shutil
import sys

import pytest

from voxport.batch.rows import read_rows
from voxport.cli import main
from voxport.errors import InputError, VoxportError

pq = pytest.importorskip("pyarrow.parquet")


def manifest(directory) -> dict[str, dict]:
    return {record["id"]: record for record in pq.read_table(directory / "manifest.parquet").to_pylist()}


def stamps(directory) -> dict[str, tuple[int, int]]:
    """Every file's inode and modification time: a rewritten file (atomic or not) changes one of them."""
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in directory.iterdir()}


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_batch_tts_bad_rows_two_workers_same_audio_as_tts_and_resume(ray_runtime, tiny_csm_dir, tmp_path, capsys):
    lines, out, solo = tmp_path / "lines.jsonl", tmp_path / "out", tmp_path / "solo.wav"
    write_jsonl(
        lines,
        [
            {"id": "seeded", "text": "Hello from the batch.", "seed": 7},
            {"text": "A row without an id, in the same engine batch.", "speaker": 1},
            {"id": "plain", "text": "Another line.", "max_tokens": 3},
            {"id": "empty", "text": "  "},
            {
                "id": "lost",
                "text": "Its context is missing.",
                "context": [{"speaker": 0, "text": "Hi.", "audio": "gone.wav"}],
            },
        ],
    )
    command = [
        "batch",
        "tts",
        str(lines),
        "--model",
        str(tiny_csm_dir),
        "--output-dir",
        str(out),
        "--workers",
        "2",
        "--device",
        "cpu",
        "--max-tokens",
        "4",
        "--batch-size",
        "2",
    ]

    assert main(command) == 1  # bad rows make the exit status non-zero; the others are done
    summary = capsys.readouterr().out
    assert "5 rows: 3 ok, 2 failed, 0 already done" in summary and "on 2 cpu workers" in summary
    records = manifest(out)
    assert list(records) == ["seeded", "000001", "plain", "empty", "lost"]
    assert {key: records[key]["status"] for key in records} == {
        "seeded": "ok",
        "000001": "ok",
        "plain": "ok",
        "empty": "error",
        "lost": "error",
    }
    assert "empty" in records["empty"]["error"] and "gone.wav does not exist" in records["lost"]["error"]
    assert records["plain"]["frames"] <= 3 and records["seeded"]["seed"] == 7
    for key in ("seeded", "000001", "plain"):
        assert (out / records[key]["output"]).is_file() and records[key]["audio_seconds"] > 0
    assert len({records[key]["worker"] for key in ("seeded", "000001", "plain", "lost")}) == 2
    assert records["seeded"]["worker"] == records["000001"]["worker"]  # one engine batch, seeds of their own

    assert (
        main(
            [
                "tts",
                "Hello from the batch.",
                "--model",
                str(tiny_csm_dir),
                "--seed",
                "7",
                "--max-tokens",
                "4",
                "--device",
                "cpu",
                "-o",
                str(solo),
            ]
        )
        == 0
    )
    assert (out / "seeded.wav").read_bytes() == solo.read_bytes()

    # A job killed after two rows (one of them without its file yet) is resumed: the rest is redone, the
    # finished row is not touched. (The row with the missing context is dropped from the input meanwhile.)
    write_jsonl(lines, [json.loads(line) for line in lines.read_text().splitlines()[:4]])
    (out / "000001.wav").unlink()
    pq.write_table(pq.read_table(out / "manifest.parquet").slice(0, 2), out / "manifest.parquet")
    before = stamps(out)
    assert main(command) == 1
    assert "4 rows: 2 ok, 1 failed, 1 already done" in capsys.readouterr().out
    after = stamps(out)
    assert after["seeded.wav"] == before["seeded.wav"] and "000001.wav" in after
    assert after["plain.wav"] != before["plain.wav"]  # it was not in the manifest: redone
    assert list(manifest(out)) == ["seeded", "000001", "plain", "empty"]
    assert manifest(out)["seeded"] == records["seeded"]

    # Nothing left to do but a row that fails again for the same reason: nothing is rewritten.
    before = stamps(out)
    assert main(command) == 1
    assert "0 ok, 1 failed, 3 already done" in capsys.readouterr().out
    assert stamps(out) == before


def test_batch_chat_replies_in_the_manifest(ray_runtime, tiny_covo_dir, speech_wav, tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    shutil.copy(speech_wav, tmp_path / "clips" / "question.wav")
    rows, out = tmp_path / "questions.jsonl", tmp_path / "answers"
    write_jsonl(
        rows,
        [
            {"id": "q1", "audio": "clips/question.wav"},
            {"id": "q2", "audio": "clips/question.wav", "max_tokens": 3},
            {"id": "nothing", "audio": "clips/none.wav"},
            {"id": "not-audio", "audio": "questions.jsonl"},
        ],
    )
    code = main(
        [
            "batch",
            "chat",
            str(rows),
            "--model",
            str(tiny_covo_dir),
            "--output-dir",
            str(out),
            "--max-tokens",
            "6",
            "--workers",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 1 and "4 rows: 2 ok, 2 failed" in capsys.readouterr().out
    records = manifest(out)
    assert records["nothing"]["status"] == "error" and "none.wav does not exist" in records["nothing"]["error"]
    assert records["not-audio"]["status"] == "error" and "is not audio" in records["not-audio"]["error"]
    for key, most in (("q1", 6), ("q2", 3)):
        record = records[key]
        assert record["status"] == "ok" and 1 <= record["tokens"] <= most and record["output"] is None
        assert (out / record["reply_file"]).read_text(encoding="utf-8") == record["reply"] + "\n"
    assert len({records[key]["worker"] for key in records}) == 2


def test_fleet_report_compares_targets_side_by_side(ray_runtime, tiny_csm_dir, tmp_path, capsys):
    out = tmp_path / "fleet"
    code = main(
        [
            "run-all",
            "--model",
            str(tiny_csm_dir),
            "--targets",
            "cpu:bfloat16,cpu:float16",
            "--out",
            str(out),
            "--configs",
            "short_2t",
            "--iterations",
            "1",
            "--steps",
            "2",
        ]
    )
    assert code == 0 and "fleet.json" in capsys.readouterr().out
    report = json.loads((out / "fleet.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    from voxport.cli.schemas import schema

    jsonschema.Draft202012Validator(schema("fleet")).validate(report)  # docs/schemas/fleet.schema.json
    assert list(report["targets"]) == ["cpu:bfloat16", "cpu:float16"]
    for name, result in report["targets"].items():
        assert result["accuracy"]["target"]["dtype"] == name.split(":")[1]
        assert result["accuracy"]["verdict"] in {"PASS", "WARN", "FAIL"}
        assert result["reproducibility"]["steps"] == 2 and result["performance"]["configs"][0]["config"] == "short_2t"
    assert report["reference"]["performance"]["dtype"] == "float32" and "accuracy" not in report["reference"]
    summary = (out / "summary.md").read_text()
    assert "| cpu:bfloat16 |" in summary and "| cpu:float16 |" in summary and "CPU float32 (reference)" in summary
    assert (out / "accuracy.png").stat().st_size > 0 and (out / "performance.png").stat().st_size > 0


def test_inputs_in_every_format(tmp_path):
    import pyarrow as pa

    (tmp_path / "a.csv").write_text(
        'id,text,seed,context\nx,"Hi, there.",3,\ny,Bye.,no,\n'
        'z,Again.,,"[{""speaker"": 1, ""text"": ""Hi."", ""audio"": ""c.wav""}]"\n'
    )
    rows = read_rows(tmp_path / "a.csv", "text")
    assert [(row.id, row.fields.get("seed"), row.problem) for row in rows][:2] == [
        ("x", 3, None),
        ("y", None, "seed is 'no': expected an integer"),
    ]
    assert rows[2].fields["context"] == [{"speaker": 1, "text": "Hi.", "audio": str(tmp_path / "c.wav")}]
    pq.write_table(pa.table({"audio": ["a.wav", "b.flac"], "seed": [1, None]}), tmp_path / "b.parquet")
    rows = read_rows(tmp_path / "b.parquet", "audio")
    assert [(row.id, row.fields) for row in rows] == [
        ("000000", {"audio": str(tmp_path / "a.wav"), "seed": 1}),
        ("000001", {"audio": str(tmp_path / "b.flac")}),
    ]
    (tmp_path / "c.txt").write_text("One.\n\nTwo.\n")
    assert [row.fields["text"] for row in read_rows(tmp_path / "c.txt", "text")] == ["One.", "Two."]
    (tmp_path / "d.jsonl").write_text('{"id": "../up", "text": "x"}\n[1]\n{"id": 5, "text": "ok", "speaker": 1.5}\n')
    assert [(row.id, row.problem) for row in read_rows(tmp_path / "d.jsonl", "text")] == [
        ("000000", "id '../up' cannot name a file: expected letters, digits, '.', '_' or '-'"),
        ("000001", "line 2 is not a JSON object"),
        ("5", "speaker is 1.5: expected an integer"),
    ]


def test_ids_and_numbers_are_read_strictly(tmp_path):
    write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"id": "nl\n", "text": "x"},
            {"id": "sup", "text": "x", "seed": "²"},
            {"id": "long", "text": "x", "speaker": "1" * 5000},
            {"id": "spaced", "text": "x", "seed": " 7"},
        ],
    )
    assert [(row.id, row.problem) for row in read_rows(tmp_path / "e.jsonl", "text")] == [
        ("000000", "id 'nl\\n' cannot name a file: expected letters, digits, '.', '_' or '-'"),
        ("sup", "seed is '²': expected an integer"),
        ("long", f"speaker is '{'1' * 56}...: expected an integer"),  # a one-line reason, not 5000 digits
        ("spaced", None),
    ]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("rows.xlsx", "", "unknown format: expected .jsonl, .csv, .parquet or .txt"),
        ("rows.jsonl", '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "id 'a' is used by rows 0 and 1"),
        ("rows.txt", "\n\n", "has no rows"),
    ],
)
def test_bad_inputs_fail_before_any_work(tmp_path, name, content, message, capsys):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        read_rows(tmp_path / name, "text")
    assert main(["batch", "tts", str(tmp_path / name), "--model", "m", "--output-dir", str(tmp_path / "o")]) == 1
    assert message.split(":")[0] in capsys.readouterr().err


def test_bad_targets_and_missing_ray(monkeypatch, tmp_path, tiny_csm_dir, capsys):
    from voxport.batch.cluster import require_ray

    assert main(["run-all", "--model", str(tiny_csm_dir), "--out", str(tmp_path), "--targets", "gpu:bf16"]) == 1
    assert "unknown target 'gpu:bf16': expected KIND:DTYPE" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(VoxportError, match=r"Ray is not installed: pip install 'voxport\[batch\]'"):
        require_ray()
    (tmp_path / "rows.txt").write_text("Hello.\n")
    assert (
        main(
            [
                "batch",
                "tts",
                str(tmp_path / "rows.txt"),
                "--model",
                str(tiny_csm_dir),
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 1
    )
    assert (
        capsys.readouterr().err.startswith("voxport: error: Ray is not installed") and not (tmp_path / "out").exists()
    )


def test_devices_are_requested_as_ray_resources():
    from voxport.batch.cluster import device_kind, device_request

    assert device_request("cuda") == {"num_gpus": 1} and device_request("xpu") == {"num_gpus": 1}
    assert device_request("npu") == {"resources": {"NPU": 1}}
    assert device_request("cpu") == device_request("mps") == {"num_cpus": 1}
    assert device_kind("NPU") == "npu"
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        device_kind("gpu")


def test_a_worker_failure_is_told_in_one_line():
    from voxport.batch.jobs import _cause

    wrapped = RuntimeError(
        'ray::MapWorker.__init__() (pid=1)\nTraceback ...\n  File "model.py", line 9\n'
        "voxport.errors.CheckpointError: cannot load CSM checkpoint /m: no model.safetensors\n"
    )
    assert _cause(wrapped) == "cannot load CSM checkpoint /m: no model.safetensors"
    assert _cause(RuntimeError("node lost\nmore")) == "RuntimeError: node lost"
