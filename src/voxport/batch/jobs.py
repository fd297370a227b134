"""Run a dataset through a model on Ray: skip rows an earlier run finished, send the rest to one worker per
device (Ray Data's actor pool), and keep the manifest up to date while results come in, so a killed job
loses at most the rows in flight."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
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


def run_batch(job: BatchJob, on_record: Callable[[dict], None] = lambda record: None,
              on_start: Callable[[int, int, str], None] = lambda todo, workers, device: None) -> BatchSummary:
    """Every row of `job.input` into `job.output_dir`; `on_start(rows to run, workers, device kind)` hears
    once the runtime is up and `on_record` each row as it finishes."""
    start = time.perf_counter()
    require_ray()  # before any work, so a missing install is one line, not a traceback halfway
    capability, required, worker = TASKS[job.kind]
    check_output_dir(job.output_dir, "--output-dir")  # also clears temporaries a killed run left there
    rows = read_rows(job.input, required)
    family = family_of(job.model)
    if family.capability != capability:
        raise InputError(f"--model {job.model} is a {family.description} checkpoint, which cannot do batch "
                         f"{job.kind}: expected a model that {capability.replace('_', ' ')}")
    ledger = Ledger(job, rows)
    seed = job.row_defaults.get("seed")
    defaults = {**job.row_defaults, "seed": fresh_seed() if seed is None else seed}
    todo = []
    for row in rows:
        if row.id in ledger.records:
            continue
        if row.problem:
            on_record(ledger.add(error_record(row.id, row.problem)))
        else:
            todo.append({**defaults, **row.fields, "id": row.id})
    device, workers = job.device, []
    if todo:
        job.output_dir.mkdir(parents=True, exist_ok=True)
        device, workers = _run_on_ray(job, worker, todo, ledger, on_record, on_start)
    ledger.save()
    return BatchSummary(
        rows=len(rows), skipped=ledger.skipped, ok=sum(record["status"] == "ok" for record in ledger.new),
        failed=sum(record["status"] != "ok" for record in ledger.new),
        audio_seconds=sum(record.get("audio_seconds") or 0.0 for record in ledger.new),
        seconds=time.perf_counter() - start, workers=workers, device=device, manifest=job.output_dir / MANIFEST,
    )


class Ledger:
    """The manifest while a job runs: rows an earlier run finished are kept as they were, new records come
    in, and the file is rewritten (atomically) only when what it would hold has changed."""

    def __init__(self, job: BatchJob, rows: list):
        self.job, self.rows = job, rows
        self.earlier = read_manifest(job.output_dir)
        self.records = {row.id: self.earlier[row.id] for row in rows if is_done(self.earlier.get(row.id),
                                                                                 job.output_dir)}
        self.skipped = len(self.records)
        self.new: list[dict] = []  # what this run did, in the order it finished
        self.written = list(self.earlier.values())
        self.saved_at = time.monotonic()

    def add(self, record: dict) -> dict:
        """Take a row's new record; a row that failed again for the same reason keeps its earlier one."""
        self.new.append(record)
        earlier = self.earlier.get(record["id"])
        same_failure = bool(earlier and record["status"] == earlier["status"] == "error"
                            and record["error"] == earlier["error"])
        self.records[record["id"]] = earlier if same_failure else record
        return record

    def save(self, every: float = 0.0) -> None:
        """Write the manifest if it changed (and, with `every`, if that many seconds passed since the last)."""
        if time.monotonic() - self.saved_at < every:
            return
        current = [self.records[row.id] for row in self.rows if row.id in self.records]
        if not same_records(self.job.kind, current, self.written):
            self.job.output_dir.mkdir(parents=True, exist_ok=True)
            write_manifest(self.job.output_dir, self.job.kind, current)
            self.written = current
        self.saved_at = time.monotonic()


def _run_on_ray(job: BatchJob, worker: type, todo: list[dict], ledger: Ledger, on_record, on_start):
    with ray_runtime(job.cluster, cpus=job.workers) as ray:
        kind = device_kind(job.device, ray)
        size = job.workers or (max(1, devices_offered(ray, kind)) if kind != "cpu" else 1)
        check_workers(ray, kind, size)
        size = min(size, len(todo))  # a worker without rows would only load its model
        on_start(len(todo), size, kind)
        batch = min(job.batch_size, -(-len(todo) // size))  # every worker gets rows, however few there are
        items = [{"row": json.dumps(row)} for row in todo]
        dataset = ray.data.from_items(items, override_num_blocks=-(-len(todo) // batch)).map_batches(
            worker, batch_size=batch, compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={"model": model_for_workers(job.model), "kind": kind, "dtype": job.dtype,
                                   "output_dir": str(job.output_dir.resolve()), "options": job.options},
            **device_request(kind),
        )
        workers = set()
        try:
            for result in dataset.iter_rows():
                record = ledger.add(json.loads(result["record"]))
                workers.add(record["worker"])
                on_record(record)
                ledger.save(every=MANIFEST_EVERY_SECONDS)
        except ray.exceptions.RayError as error:
            ledger.save()  # the rows that finished stay done
            raise VoxportError(f"a {kind} worker failed, so the job stopped: {_cause(error)}") from None
    return kind, sorted(workers)


def _cause(error: BaseException) -> str:
    """The worker's own error behind Ray's wrappers, as one line. Ray carries it back as traceback text, so
    a voxport error is found by its name there; anything else is told by Ray's first line."""
    text = str(error)
    found = re.findall(r"voxport\.errors\.\w+: (.+)", text)
    if found:
        return found[-1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
