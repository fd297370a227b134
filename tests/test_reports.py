"""Typed reports: the JSON every command writes follows the schema kept in docs/schemas/, the schemas are the
models' own, and a report written from its typed object keeps exactly the keys its validator gave."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from voxport.cli import main
from voxport.cli.chat import ChatRoundReport
from voxport.cli.schemas import SCHEMAS, schema, schema_text, write_schemas
from voxport.models.base import ChatRound
from voxport.validate.reports import REPORTS, AccuracyReport, OpsReport, report_json, write_report

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def follows(name: str, document: dict) -> None:
    jsonschema.Draft202012Validator(schema(name)).validate(document)


def test_the_schemas_in_docs_are_the_reports_own():
    """A report changed without `python -m voxport.cli.schemas` fails here."""
    assert sorted(path.name for path in DOCS.iterdir()) == sorted(f"{name}.schema.json" for name in SCHEMAS)
    for name in SCHEMAS:
        assert (DOCS / f"{name}.schema.json").read_text() == schema_text(name), "rerun python -m voxport.cli.schemas"
        jsonschema.Draft202012Validator.check_schema(schema(name))


def test_schema_writer_writes_one_file_a_report(tmp_path):
    written = write_schemas(tmp_path / "schemas")
    assert [path.name for path in written] == [f"{name}.schema.json" for name in SCHEMAS]
    assert all(json.loads(path.read_text())["$schema"].endswith("2020-12/schema") for path in written)


def test_run_all_files_follow_their_schemas(tiny_covo_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        main(
            [
                "run-all",
                "--model",
                str(tiny_covo_dir),
                "--device",
                "cpu",
                "--dtype",
                "bfloat16",
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
        == 0
    )
    for name in REPORTS:
        document = json.loads((out / f"{name}.json").read_text())
        assert "error" not in document, document
        follows(name, document)
        # Typed and written again: the same keys and values (numbers compare equal, 1 == 1.0).
        assert json.loads(report_json(REPORTS[name].model_validate(document))) == document
    accuracy = json.loads((out / "accuracy.json").read_text())
    assert "reason" not in accuracy["blocks"][0] and set(accuracy) >= {"verdict", "first_drift_module", "environment"}
    bad = {**accuracy, "verdict": "MAYBE"}
    with pytest.raises(jsonschema.ValidationError, match="MAYBE"):
        follows("accuracy", bad)
    missing = {key: value for key, value in accuracy.items() if key != "first_drift_module"}
    with pytest.raises(jsonschema.ValidationError, match="first_drift_module"):
        follows("accuracy", missing)
    summary = (out / "summary.md").read_text()
    assert f"Verdict **{accuracy['verdict']}** over {len(accuracy['examples'])} examples" in summary


def test_json_out_follows_its_schema_and_keeps_added_keys(tiny_csm_dir, tmp_path, capsys):
    out = tmp_path / "ops.json"
    assert main(["ops", "--model", str(tiny_csm_dir), "--device", "cpu", "--json-out", str(out)]) == 0
    document = json.loads(out.read_text())
    follows("ops", document)
    assert "replay" not in document and "environment" not in document  # optional keys only where given
    report = OpsReport.model_validate({**document, "peak_rss_bytes": 123})  # a key a validator may add later
    write_report(tmp_path / "again.json", report)
    assert json.loads((tmp_path / "again.json").read_text()) == {**document, "peak_rss_bytes": 123}
    assert "distinct aten ops traced on cpu" in capsys.readouterr().out


def test_tts_and_chat_json_follow_their_schemas(tiny_csm_dir, tiny_covo_dir, speech_wav, tmp_path, capsys):
    assert (
        main(
            [
                "tts",
                "Schema.",
                "--model",
                str(tiny_csm_dir),
                "-o",
                str(tmp_path / "a.wav"),
                "--max-tokens",
                "2",
                "--seed",
                "1",
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    follows("tts", json.loads(capsys.readouterr().out))
    for mode in ("a2t", "a2ta"):
        assert (
            main(
                [
                    "chat",
                    "--model",
                    str(tiny_covo_dir),
                    "--audio",
                    str(speech_wav),
                    "--mode",
                    mode,
                    "--max-new-tokens",
                    "4",
                    "--seed",
                    "2",
                    "--device",
                    "cpu",
                    "--output-dir",
                    str(tmp_path / "r"),
                    "--json",
                ]
            )
            == 0
        )
        report = json.loads(capsys.readouterr().out)
        follows("chat", report)
        assert report["mode"] == mode and report["seed"] == 2 and report["rounds"][0]["audio"] == str(speech_wav)
        assert ("wav" in report["rounds"][0]) == (mode == "a2ta")  # the spoken reply's keys in a2ta only


def test_chat_round_report_declares_every_field_of_a_round():
    """A field ChatRound gains would pass through undeclared (and missing from the schema): declare it."""
    fields = {field.name for field in dataclasses.fields(ChatRound)} - {"speech"}
    assert fields == set(ChatRoundReport.model_fields) - {"audio", "wav", "audio_seconds"}


def test_a_validator_result_that_breaks_its_report_is_refused():
    with pytest.raises(ValueError, match="verdict"):
        AccuracyReport.model_validate({"model": "m", "verdict": "MAYBE"})


def test_accuracy_audio_that_is_missing_is_one_clear_line(tiny_csm_dir, tmp_path, capsys):
    assert main(["accuracy", "--model", str(tiny_csm_dir), "--audio", str(tmp_path / "none.wav")]) == 1
    assert (
        capsys.readouterr().err.strip() == f"voxport: error: --audio {tmp_path / 'none.wav'} is not a file: "
        "expected a speech recording"
    )
