"""Run a dataset through a model on Ray: skip rows an earlier run finished, send the rest to one worker per
device (Ray Data's actor pool), and keep the manifest up to date while results come in, so a killed job
loses at most the rows in flight."""

from __future__ import annotations

import json
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
)
from voxport.batch.manifest import MANIFEST, error_record, is_done, read_manifest, same_records, write_manifest
from voxport.batch.rows import read_rows
from voxport.errors import InputError
from voxport.runtime.seeding import fresh_seed

MANIFEST_EVERY_SECONDS = 5.0
TASKS = {  # kind -> (the column every row needs, worker class path)
    "tts": ("text", "voxport.batch.workers:SpeechWorker"),
    "chat": ("audio", "voxport.batch.workers:ChatWorker"),
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
    required, worker_path = TASKS[job.kind]
    if job.output_dir.exists() and not job.output_dir.is_dir():
        raise InputError(f"--output-dir {job.output_dir} is a file: expected a directory")
    rows = read_rows(job.input, required)
    earlier = read_manifest(job.output_dir)
    records = {row.id: earlier[row.id] for row in rows if is_done(earlier.get(row.id), job.output_dir)}
    skipped = len(records)
    seed = job.row_defaults.get("seed")
    defaults = {**job.row_defaults, "seed": fresh_seed() if seed is None else seed}
    todo = []
    for row in rows:
        if row.id in records:
            continue
        if row.problem:
            records[row.id] = error_record(row.id, row.problem)
            on_record(records[row.id])
        else:
            todo.append({**defaults, **row.fields, "id": row.id})
    device, workers = job.device, []
    if todo:
        job.output_dir.mkdir(parents=True, exist_ok=True)
        device, workers = _run_on_ray(job, worker_path, todo, rows, records, on_record, on_start)
    new = [records[row.id] for row in rows if records[row.id] is not earlier.get(row.id)]
    for row in rows:  # a row that failed again for the same reason keeps its earlier record
        if _same_failure(records[row.id], earlier.get(row.id)):
            records[row.id] = earlier[row.id]
    ordered = [records[row.id] for row in rows]
    manifest = job.output_dir / MANIFEST
    if not same_records(job.kind, ordered, [earlier.get(row.id) for row in rows]):  # unchanged: not rewritten
        job.output_dir.mkdir(parents=True, exist_ok=True)
        write_manifest(job.output_dir, job.kind, ordered)
    return BatchSummary(
        rows=len(rows), skipped=skipped, ok=sum(record["status"] == "ok" for record in new),
        failed=sum(record["status"] != "ok" for record in new),
        audio_seconds=sum(record.get("audio_seconds") or 0.0 for record in new),
        seconds=time.perf_counter() - start, workers=workers, device=device, manifest=manifest,
    )


def _run_on_ray(job: BatchJob, worker_path: str, todo: list[dict], rows, records: dict, on_record, on_start):
    module, _, name = worker_path.partition(":")
    worker = getattr(__import__(module, fromlist=[name]), name)
    with ray_runtime(job.cluster, cpus=job.workers) as ray:
        kind = device_kind(job.device, ray)
        size = job.workers or (max(1, devices_offered(ray, kind)) if kind != "cpu" else 1)
        check_workers(ray, kind, size)
        on_start(len(todo), size, kind)
        batch = min(job.batch_size, -(-len(todo) // size))  # every worker gets rows, however few there are
        items = [{"row": json.dumps(row)} for row in todo]
        dataset = ray.data.from_items(items, override_num_blocks=-(-len(todo) // batch)).map_batches(
            worker, batch_size=batch, compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={"model": model_for_workers(job.model), "kind": kind, "dtype": job.dtype,
                                   "output_dir": str(job.output_dir.resolve()), "options": job.options},
            **device_request(kind),
        )
        workers, saved = set(), time.monotonic()
        for result in dataset.iter_rows():
            record = json.loads(result["record"])
            records[record["id"]] = record
            workers.add(record["worker"])
            on_record(record)
            if time.monotonic() - saved > MANIFEST_EVERY_SECONDS:
                write_manifest(job.output_dir, job.kind, [records[row.id] for row in rows if row.id in records])
                saved = time.monotonic()
    return kind, sorted(workers)


def _same_failure(record: dict, earlier: dict | None) -> bool:
    return bool(earlier and record["status"] == earlier["status"] == "error" and record["error"] == earlier["error"])

