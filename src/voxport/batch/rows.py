"""A batch job's input: JSON Lines, CSV, Parquet or plain text, read into rows with an id and their fields.

Each row is checked on its own: a field of the wrong type makes that row an error (with the reason), never
the whole input. Paths in a row (chat audio, tts context audio) are relative to the input file.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from voxport.errors import InputError, first_line

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
}
_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits ("²" and "٣" are digits to int()), at most 18 of them
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # whole: fullmatch (a "$" would let "id\n" through)


@dataclass
class Row:
    """One input row: `fields` as given (numbers checked), or `problem` saying why it cannot run."""

    id: str
    fields: dict = field(default_factory=dict)
    problem: str | None = None


def read_rows(path: Path, required: str) -> list[Row]:
    """Every row of `path` in order; `required` is the column each row must have (text or audio)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"input {path} has an unknown format: expected .jsonl, .csv, .parquet or .txt")
    if not path.is_file():
        raise InputError(f"input {path} does not exist")
    records = _READERS[FORMATS[suffix]](path, required)
    rows = [_row(index, record, required, path.resolve().parent) for index, record in enumerate(records)]
    _check_unique(rows, path)
    if not rows:
        raise InputError(f"input {path} has no rows: expected one {required} a row")
    return rows


def _jsonl(path: Path, required: str) -> list[dict | str]:
    records = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            records.append(f"line {number} is not JSON ({error})")
            continue
        records.append(record if isinstance(record, dict) else f"line {number} is not a JSON object")
    return records


def _csv(path: Path, required: str) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            return [
                {key: value for key, value in record.items() if value not in (None, "")}
                for record in csv.DictReader(stream)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read input {path}: {error}") from None


def _parquet(path: Path, required: str) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"cannot read input {path}: {first_line(error)}") from None
    return [{key: value for key, value in record.items() if value is not None} for record in table.to_pylist()]


def _text(path: Path, required: str) -> list[dict]:
    return [{required: line.strip()} for line in _lines(path) if line.strip()]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read input {path}: {error}") from None


_READERS = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet, "text": _text}


def _row(index: int, record: dict | str, required: str, base: Path) -> Row:
    if isinstance(record, str):
        return Row(id=f"{index:06d}", problem=record)
    raw_id = record.get("id")
    row_id = f"{index:06d}" if raw_id is None else str(raw_id)
    if not _SAFE_ID.fullmatch(row_id):
        return Row(
            id=f"{index:06d}",
            problem=f"id {_brief(row_id)} cannot name a file: expected letters, digits, '.', '_' or '-'",
        )
    try:
        return Row(id=row_id, fields=_fields(record, required, base))
    except InputError as error:
        return Row(id=row_id, problem=str(error))


def _fields(record: dict, required: str, base: Path) -> dict:
    value = record.get(required)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{required} is missing or empty: expected a non-empty string")
    fields = {required: value if required == "text" else str(base / value)}
    for name in ("speaker", "seed", "max_tokens"):
        if record.get(name) is not None:
            fields[name] = _integer(record[name], name)
    for name in ("ssml", "normalize", "timestamps"):
        if record.get(name) is not None:
            fields[name] = _boolean(record[name], name)
    if record.get("context") is not None:
        fields["context"] = _context(record["context"], base)
    return fields


def _boolean(value, name: str) -> bool:
    """true/false, also as CSV spells them (true, false, 1, 0)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip(" \t").lower() if isinstance(value, (str, int)) else None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise InputError(f"{name} is {_brief(value)}: expected true or false")


def _integer(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{name} is {_brief(value)}: expected an integer")
    if isinstance(value, str):
        text = value.strip(" \t")
        number = int(text) if _INTEGER.fullmatch(text) else None
    else:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    if number is None:
        raise InputError(f"{name} is {_brief(value)}: expected an integer")
    return number


def _context(value, base: Path) -> list[dict]:
    """Earlier turns, oldest first: a list of {speaker, text, audio} (a JSON string of one, in CSV)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InputError("context is not JSON: expected a list of {speaker, text, audio}") from None
    if not isinstance(value, list) or not all(isinstance(turn, dict) for turn in value):
        raise InputError("context is not a list of {speaker, text, audio}")
    turns = []
    for turn in value:
        if not isinstance(turn.get("text"), str) or not isinstance(turn.get("audio"), str):
            raise InputError("a context turn lacks its text or audio: expected {speaker, text, audio}")
        turns.append(
            {
                "speaker": _integer(turn.get("speaker", 0), "context speaker"),
                "text": turn["text"],
                "audio": str(base / turn["audio"]),
            }
        )
    return turns


def _brief(value) -> str:
    """A value as a message shows it: its repr, cut short when long (a manifest's error is one line)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _check_unique(rows: list[Row], path: Path) -> None:
    seen: dict[str, int] = {}
    for number, row in enumerate(rows):
        if row.id in seen:
            raise InputError(
                f"input {path}: id {row.id!r} is used by rows {seen[row.id]} and {number}: "
                "expected one id a row (ids name the output files)"
            )
        seen[row.id] = number
