"""voxport batch under kills: a job SIGKILLed half-way loses no finished row (its rerun redoes none), and a row
that kills its worker (a real SIGSEGV) is retried a bounded number of times, then recorded as an error."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from voxport.batch import jobs
from voxport.batch.journal import JOURNAL
from voxport.batch.workers import SpeechWorker

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("ray")


def write_jsonl(path, rows) -> None:
    import json

    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def manifest(directory) -> dict[str, dict]:
    return {record["id"]: record for record in pq.read_table(directory / "manifest.parquet").to_pylist()}


def stamps(directory) -> dict[str, tuple[int, int]]:
    """Every WAV's inode and modification time: a rewritten file (atomic or not) changes one of them."""
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in directory.glob("*.wav")}


def test_a_job_killed_half_way_loses_no_finished_row_and_its_rerun_redoes_none(tiny_csm_dir, tmp_path):
    lines, out = tmp_path / "lines.jsonl", tmp_path / "out"
    write_jsonl(lines, [{"id": f"row{number:02d}", "text": f"Line number {number}."} for number in range(40)])
    command = [
        sys.executable,
        "-m",
        "voxport",
        "batch",
        "tts",
        str(lines),
        "--model",
        str(tiny_csm_dir),
        "--output-dir",
        str(out),
        "--workers",
        "1",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--max-tokens",
        "4",
        "--seed",
        "3",
    ]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("*.wav"))) < 8:
        assert job.poll() is None, job.stderr.read().decode()
        assert time.monotonic() < deadline, "the job wrote no outputs"
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)  # the job and the Ray runtime it started, at once
    job.wait()
    made = stamps(out)

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr
    done = int(re.search(r"(\d+) already done", rerun.stdout).group(1))
    after = stamps(out)
    rewritten = [name for name in made if after[name] != made[name]]
    assert done >= len(made) - 1 and len(rewritten) <= 1, (len(made), done, rewritten)  # at most the row in flight
    records = manifest(out)
    assert len(records) == 40 and all(record["status"] == "ok" for record in records.values())
    assert not (out / JOURNAL).exists()  # the manifest holds it all


class CrashingWorker(SpeechWorker):
    """Dies of a real segmentation fault whenever it is given the row that says so."""

    def run(self, rows: list[dict]) -> list[dict]:
        if any(row["text"] == "Crash here." for row in rows):
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(rows)


@pytest.fixture
def crashing_tts(monkeypatch):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import a test module
    monkeypatch.setitem(jobs.TASKS, "tts", (*jobs.TASKS["tts"][:2], CrashingWorker))
    from voxport.batch.cluster import start

    start(cpus=2)
    yield
    import ray

    ray.shutdown()


def test_a_row_that_kills_its_worker_is_retried_a_bounded_number_of_times_then_an_error(
    crashing_tts, tiny_csm_dir, tmp_path
):
    lines, out = tmp_path / "lines.jsonl", tmp_path / "out"
    write_jsonl(
        lines,
        [
            {"id": "one", "text": "One."},
            {"id": "bad", "text": "Crash here."},
            {"id": "two", "text": "Two."},
            {"id": "three", "text": "Three."},
        ],
    )
    job = jobs.BatchJob(
        kind="tts",
        input=lines,
        model=str(tiny_csm_dir),
        output_dir=out,
        device="cpu",
        workers=1,
        batch_size=4,
        row_defaults={"speaker": 0, "max_tokens": 3, "seed": 1},
        max_retries=1,
    )
    summary = jobs.run_batch(job)
    assert (summary.ok, summary.failed) == (3, 1)
    records = manifest(out)
    assert records["bad"]["status"] == "error" and records["bad"]["error"] == (
        "its worker died each of the 2 times it ran alone (a crash: a segfault, out of memory, or an exit); not "
        "run again (--max-retries 1)"
    )
    assert all(records[key]["status"] == "ok" and (out / f"{key}.wav").is_file() for key in ("one", "two", "three"))
    assert not (out / JOURNAL).exists()
