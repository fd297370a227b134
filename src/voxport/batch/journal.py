"""Rows finished, as the workers record them: a row's record is durable as soon as its files are, whatever
happens to the Ray block it came in. (The driver hears of a block only when Ray hands it back; a job killed
before that would lose every finished row of the block, and a rerun would redo them.)

DIR/.voxport-journal/<id>.json is a finished row's manifest record, written atomically by its worker right
after the row's files; <id>.started marks a row a worker began and has not finished, counting the times its
worker died while it ran alone. Ray runs the block of a worker that died (a segfault, out of memory, an exit)
again, without end; there, each row that was begun and not finished runs alone, and a row whose worker died
under it alone more than `max_retries` times is recorded as an error instead of being run again. The driver merges
the records into the manifest when a job starts and while it runs, and empties the journal once the
manifest holds them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from voxport.batch.manifest import error_record, is_done
from voxport.runtime.files import replaced_atomically, sweep_stale

JOURNAL = ".voxport-journal"
MAX_RETRIES = 2  # runs again of a row whose worker died while it ran alone, before it is an error


class Journal:
    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.directory = self.output_dir / JOURNAL

    # --- the workers' side --------------------------------------------------------------------------------

    def finished(self, record: dict) -> None:
        """`record` is its row's result: its files are in place."""
        self.directory.mkdir(exist_ok=True)
        _write(self.directory / f"{record['id']}.json", json.dumps(record))
        (self.directory / f"{record['id']}.started").unlink(missing_ok=True)

    def done(self, row_id: str) -> dict | None:
        """The record of a row a worker already finished in this job (a block Ray retried), if its files are
        still there."""
        record = _read(self.directory / f"{row_id}.json")
        return record if is_done(record, self.output_dir) else None

    def deaths(self, row_id: str) -> int | None:
        """None when no worker began the row without finishing it; else how many times its worker died while
        it ran alone (0: only while it ran with others, any of which may have been the cause)."""
        try:
            return int((self.directory / f"{row_id}.started").read_text())
        except (OSError, ValueError):
            return None

    def begin(self, row_ids: list[str]) -> None:
        """Note that a worker begins these rows together: were it to die now, a row that runs alone died once
        more; rows that run together are only suspects."""
        self.directory.mkdir(exist_ok=True)
        for row_id in row_ids:
            _write(self.directory / f"{row_id}.started", str((self.deaths(row_id) or 0) + (len(row_ids) == 1)))

    @staticmethod
    def given_up(row_id: str, deaths: int, max_retries: int) -> dict:
        return error_record(
            row_id,
            f"its worker died each of the {deaths} times it ran alone (a crash: a segfault, "
            f"out of memory, or an exit); not run again (--max-retries {max_retries})",
        )

    # --- the driver's side --------------------------------------------------------------------------------

    def open(self) -> dict[str, dict]:
        """The records finished by an earlier run (killed before its manifest held them). Starts left by it
        are forgotten: a job killed as a whole is no row's crash."""
        if not self.directory.is_dir():
            return {}
        sweep_stale(self.directory)
        for started in self.directory.glob("*.started"):
            started.unlink(missing_ok=True)
        return self.records()

    def records(self, known: set[str] = frozenset()) -> dict[str, dict]:
        """Every finished row's record by id, but those of rows in `known` (temporaries, whose names begin
        with '.', are not records)."""
        if not self.directory.is_dir():
            return {}
        found = (_read(path) for path in sorted(self.directory.glob("[!.]*.json")) if path.stem not in known)
        return {record["id"]: record for record in found if record is not None}

    def clear(self) -> None:
        """The manifest holds every record: the journal has nothing more to say."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _write(path: Path, text: str) -> None:
    with replaced_atomically(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _read(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, or not written by a worker (every journal file is written whole)
    return record if isinstance(record, dict) and isinstance(record.get("id"), str) else None
