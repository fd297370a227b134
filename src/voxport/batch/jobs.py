"""Run a dataset through a model on Ray: skip rows an earlier run finished, send the rest to one worker per
device (Ray Data's actor pool), and keep the manifest up to date while results come in. Workers journal each
row as they finish it (journal.py), so a job killed at any moment loses no finished row: the journal is
merged into the manifest while the job runs and when the next one starts."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from voxport.batch.cluster import (
    check_workers,
    device_kind,
    device_request,
    devices_offered,
    model_for_workers,
    ray_runtime,
    require_ray,
)
from voxport.batch.journal import MAX_RETRIES, Journal
from voxport.batch.manifest import MANIFEST, error_record, is_done, read_manifest, same_records, write_manifest
from voxport.batch.rows import read_rows
from voxport.batch.workers import ChatWorker, SpeechWorker
from voxport.errors import InputError, VoxportError
from voxport.models.registry import family_of
from voxport.runtime.files import check_output_dir
from voxport.runtime.seeding import fresh_seed

MANIFEST_EVERY_SECONDS = 5.0
TASKS = {  # kind -> (the capability its model needs, the column every row needs, its worker)
    "tts": ("speaks_text", "text", SpeechWorker),
    "chat": ("answers_audio", "audio", ChatWorker),
}


@dataclass
class BatchJob:
    kind: str  # "tts" or "chat"
    input: Path
    model: str
    output_dir: Path
    device: str = "auto"  # a device kind, or auto: the best the Ray runtime offers
    dtype: str = "auto"
    workers: int | None = None  # default: one per device of that kind, else one
    batch_size: int = 8  # rows a worker takes at once (the engine's batch for tts)
    cluster: str | None = None
    row_defaults: dict = field(default_factory=dict)  # speaker, seed, max_tokens for rows that name none
    options: dict = field(default_factory=dict)  # settings every row shares (sampling, chat mode)
    max_retries: int = MAX_RETRIES  # runs of a row again after its worker died under it


@dataclass
class BatchSummary:
    rows: int
    skipped: int  # done by an earlier run
    ok: int
    failed: int
    audio_seconds: float
    seconds: float
    workers: list[str]
    device: str
    manifest: Path

    @property
    def processed(self) -> int:
        return self.ok + self.failed


def run_batch(
    job: BatchJob,
    on_record: Callable[[dict], None] = lambda record: None,
    on_start: Callable[[int, int, str], None] = lambda todo, workers, device: None,
) -> BatchSummary:
    """Every row of `job.input` into `job.output_dir`; `on_start(rows to run, workers, device kind)` hears
    once the runtime is up and `on_record` each row as it finishes."""
    start = time.perf_counter()
    require_ray()  # before any work, so a missing install is one line, not a traceback halfway
    capability, required, worker = TASKS[job.kind]
    check_output_dir(job.output_dir, "--output-dir")  # also clears temporaries a killed run left there
    rows = read_rows(job.input, required)
    family = family_of(job.model)
    if family.capability != capability:
        raise InputError(
            f"--model {job.model} is a {family.description} checkpoint, which cannot do batch "
            f"{job.kind}: expected a model that {capability.replace('_', ' ')}"
        )
    ledger = Ledger(job, rows, on_record)
    seed = job.row_defaults.get("seed")
    defaults = {**job.row_defaults, "seed": fresh_seed() if seed is None else seed}
    todo = []
    for row in rows:
        if row.id in ledger.records:
            continue
        if row.problem:
            ledger.add(error_record(row.id, row.problem))
        else:
            todo.append({**defaults, **row.fields, "id": row.id})
    device, workers = job.device, []
    if todo:
        job.output_dir.mkdir(parents=True, exist_ok=True)
        device = _run_on_ray(job, worker, todo, ledger, on_start)
        workers = sorted({record["worker"] for record in ledger.new if record.get("worker")})
    ledger.close()
    return BatchSummary(
        rows=len(rows),
        skipped=ledger.skipped,
        ok=sum(record["status"] == "ok" for record in ledger.new),
        failed=sum(record["status"] != "ok" for record in ledger.new),
        audio_seconds=sum(record.get("audio_seconds") or 0.0 for record in ledger.new),
        seconds=time.perf_counter() - start,
        workers=workers,
        device=device,
        manifest=job.output_dir / MANIFEST,
    )


class Ledger:
    """The manifest while a job runs: rows an earlier run finished are kept as they were (those it journaled
    but did not get into its manifest included), new records come in from the workers' blocks and their
    journal, and the file is rewritten (atomically) only when what it would hold has changed."""

    def __init__(self, job: BatchJob, rows: list, on_record: Callable[[dict], None] = lambda record: None):
        self.job, self.rows, self.on_record = job, rows, on_record
        self.journal = Journal(job.output_dir)
        manifest = read_manifest(job.output_dir)
        journaled = self.journal.open()
        self.earlier = manifest | journaled  # the journal is the newer: rows finished after the manifest was written
        self.records = {
            row.id: self.earlier[row.id] for row in rows if is_done(self.earlier.get(row.id), job.output_dir)
        }
        self.skipped = len(self.records)
        self.new: list[dict] = []  # what this run did, in the order it finished
        self.written = list(manifest.values())
        self.saved_at = time.monotonic()
        self._taken: set[str] = set()  # ids in self.new
        self._lock = threading.Lock()  # the journal follower and the blocks coming back
        if journaled:
            self.save()
            self.journal.clear()  # from here on, the journal holds this run's rows only

    def add(self, record: dict) -> None:
        """Take a row's new record, once (it may come from the journal and again with its block); a row that
        failed again for the same reason keeps its earlier one."""
        with self._lock:
            if record["id"] in self._taken:
                return
            self._taken.add(record["id"])
            self.new.append(record)
            earlier = self.earlier.get(record["id"])
            same_failure = bool(
                earlier and record["status"] == earlier["status"] == "error" and record["error"] == earlier["error"]
            )
            self.records[record["id"]] = earlier if same_failure and earlier is not None else record
            self.on_record(record)  # under the lock: the journal's follower and the blocks take turns

    def absorb(self, pending: set[str]) -> None:
        """Take the records the workers journaled for the rows in `pending`, as if their blocks had come back."""
        with self._lock:
            taken = set(self._taken)
        for row_id, record in self.journal.records(known=taken).items():
            if row_id in pending:
                self.add(record)

    def save(self, every: float = 0.0) -> None:
        """Write the manifest if it changed (and, with `every`, if that many seconds passed since the last)."""
        with self._lock:
            if time.monotonic() - self.saved_at < every:
                return
            current = [self.records[row.id] for row in self.rows if row.id in self.records]
            if not same_records(self.job.kind, current, self.written):
                self.job.output_dir.mkdir(parents=True, exist_ok=True)
                write_manifest(self.job.output_dir, self.job.kind, current)
                self.written = current
            self.saved_at = time.monotonic()

    @contextmanager
    def following(self, pending: set[str], every: float) -> Iterator[None]:
        """While the block runs, merge the journal into the manifest every `every` seconds; after it, take
        what is left there (rows of blocks Ray never handed back)."""
        stop = threading.Event()

        def follow() -> None:
            while not stop.wait(every):
                self.absorb(pending)
                self.save()

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        try:
            yield
        finally:
            stop.set()
            follower.join()
            self.absorb(pending)
            self.save()

    def close(self) -> None:
        """The manifest holds every record: the journal can go."""
        self.save()
        self.journal.clear()


def _run_on_ray(job: BatchJob, worker: type, todo: list[dict], ledger: Ledger, on_start) -> str:
    with ray_runtime(job.cluster, cpus=job.workers) as ray:
        kind = device_kind(job.device, ray)
        size = job.workers or (max(1, devices_offered(ray, kind)) if kind != "cpu" else 1)
        check_workers(ray, kind, size)
        size = min(size, len(todo))  # a worker without rows would only load its model
        on_start(len(todo), size, kind)
        batch = min(job.batch_size, -(-len(todo) // size))  # every worker gets rows, however few there are
        # A CPU worker gets its share of the cores, as many threads as `voxport tts` would use when alone.
        threads = max(1, devices_offered(ray, "cpu") // size) if kind == "cpu" else None
        request = {"num_cpus": threads} if threads else device_request(kind)
        items = [{"row": json.dumps(row)} for row in todo]
        dataset = ray.data.from_items(items, override_num_blocks=-(-len(todo) // batch)).map_batches(
            worker,
            batch_size=batch,
            compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={
                "model": model_for_workers(job.model),
                "kind": kind,
                "dtype": job.dtype,
                "output_dir": str(job.output_dir.resolve()),
                "options": job.options,
                "max_retries": job.max_retries,
                "threads": threads,
            },
            **request,
        )
        with ledger.following({row["id"] for row in todo}, MANIFEST_EVERY_SECONDS):
            try:
                for result in dataset.iter_rows():
                    ledger.add(json.loads(result["record"]))
                    ledger.save(every=MANIFEST_EVERY_SECONDS)
            except ray.exceptions.RayError as error:
                raise VoxportError(f"a {kind} worker failed, so the job stopped: {_cause(error)}") from None
    return kind


def _cause(error: BaseException) -> str:
    """The worker's own error behind Ray's wrappers, as one line. Ray carries it back as traceback text, so
    a voxport error is found by its name there; anything else is told by Ray's first line."""
    text = str(error)
    found = re.findall(r"voxport\.errors\.\w+: (.+)", text)
    if found:
        return found[-1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
