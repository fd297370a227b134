"""DIR/manifest.parquet: one record per input row (status, reason, outputs, sizes, timings, worker), written
atomically, and read back so a rerun skips rows already done."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from voxport.errors import InputError, first_line
from voxport.runtime.files import replaced_atomically

MANIFEST = "manifest.parquet"
OUTPUT_COLUMNS = ("output", "reply_file", "timestamps")  # files, relative to the output directory


def schema(kind: str):
    """Columns of a tts or chat manifest."""
    import pyarrow as pa

    common = [("id", pa.string()), ("status", pa.string()), ("error", pa.string()), ("output", pa.string())]
    specific = {
        "tts": [("frames", pa.int64()), ("timestamps", pa.string())],  # timestamps: <id>.json, where asked
        "chat": [("reply", pa.string()), ("reply_file", pa.string()), ("tokens", pa.int64())],
    }[kind]
    timings = [
        ("audio_seconds", pa.float64()),
        ("seconds", pa.float64()),
        ("seed", pa.int64()),
        ("worker", pa.string()),
    ]
    return pa.schema(common + specific + timings)


def error_record(row_id: str, reason: str) -> dict:
    return {"id": row_id, "status": "error", "error": reason}


def read_manifest(directory: Path) -> dict[str, dict]:
    """The records of an earlier run by id (none when there was no earlier run)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = directory / MANIFEST
    if not path.exists():
        return {}
    try:
        records = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise InputError(
            f"cannot read {path} from an earlier run ({first_line(error)}): move it away to start over"
        ) from None
    return {record["id"]: record for record in records}


def is_done(record: dict | None, directory: Path) -> bool:
    """An earlier run made this row, and its files are still there."""
    return bool(
        record
        and record.get("status") == "ok"
        and all((directory / record[name]).is_file() for name in OUTPUT_COLUMNS if record.get(name))
    )


def same_records(kind: str, first: Sequence[dict | None], second: Sequence[dict | None]) -> bool:
    """Whether two lists of records would write the same manifest."""
    return [_columns(kind, record or {}) for record in first] == [_columns(kind, record or {}) for record in second]


def write_manifest(directory: Path, kind: str, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([_columns(kind, record) for record in records], schema=schema(kind))
    path = directory / MANIFEST
    with replaced_atomically(path) as temporary:
        pq.write_table(table, temporary)
    return path


def _columns(kind: str, record: dict) -> dict:
    return {name: record.get(name) for name in schema(kind).names}
