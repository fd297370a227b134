"""The JSON Schema of every JSON object a command writes, kept in docs/schemas/ for the people who script
against them: `python -m voxport.cli.schemas [DIR]` rewrites them after a report changes (tests/test_reports.py
fails until it is run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from voxport.cli.chat import ChatReport
from voxport.cli.tts import TtsReport
from voxport.runtime.files import replaced_atomically
from voxport.validate.reports import AccuracyReport, FleetReport, OpsReport, PerformanceReport, ReproReport

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMAS: dict[str, Any] = {
    "accuracy": AccuracyReport,  # voxport accuracy --json-out, run-all's accuracy.json
    "reproducibility": ReproReport,  # voxport repro --json-out, run-all's reproducibility.json
    "performance": PerformanceReport,  # voxport bench --json-out, run-all's performance.json
    "ops": OpsReport,  # voxport ops --json-out, run-all's ops.json
    "fleet": FleetReport,  # run-all --targets: fleet.json
    "tts": TtsReport,  # voxport tts --json
    "chat": ChatReport,  # voxport chat --json
}
DOCS = Path(__file__).resolve().parents[3] / "docs" / "schemas"


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the object SCHEMAS[name] describes."""
    return {"$schema": DRAFT, **TypeAdapter(SCHEMAS[name]).json_schema()}


def schema_text(name: str) -> str:
    return json.dumps(schema(name), indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = DOCS) -> list[Path]:
    """NAME.schema.json for every report into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMAS:
        path = directory / f"{name}.schema.json"
        with replaced_atomically(path) as temporary:
            temporary.write_text(schema_text(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS):
        print(path)
