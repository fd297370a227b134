"""run-all: every check on one model and device, each stage's result kept even when another fails."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel

from voxport.errors import InputError, first_line
from voxport.runtime.devices import dtype_name
from voxport.runtime.files import replaced_atomically
from voxport.validate.accuracy import run_accuracy
from voxport.validate.environment import environment
from voxport.validate.ops import run_ops
from voxport.validate.performance import run_benchmark
from voxport.validate.report import plot_drift, plot_memory, plot_performance, summary_markdown
from voxport.validate.reports import REPORTS, Environment, StageError, ValidationRun, write_report

STAGE_FILES = {
    "accuracy": "accuracy.json",
    "reproducibility": "reproducibility.json",
    "performance": "performance.json",
    "ops": "ops.json",
}


def run_all(
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    out: Path,
    configs,
    iterations: int = 3,
    steps: int = 16,
    progress=print,
) -> Path:
    """Write the four JSON results, the plots and summary.md into `out`; returns summary.md's path."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: expected a directory")
    out.mkdir(parents=True, exist_ok=True)
    env = Environment.model_validate(environment(device))
    results = run_stages(
        source,
        device,
        dtype,
        configs,
        iterations,
        steps,
        progress=progress,
        on_stage=lambda name, result: write_report(
            out / STAGE_FILES[name], result.model_copy(update={"environment": env})
        ),
    )
    plots = {
        "per-block drift": _plot(plot_drift, results.accuracy, out / "drift.png"),
        "latency and real-time factor": _plot(plot_performance, results.performance, out / "performance.png"),
        "peak memory": _plot(plot_memory, results.performance, out / "memory.png"),
    }
    summary = out / "summary.md"
    with replaced_atomically(summary) as temporary:
        temporary.write_text(summary_markdown(results, plots, env))
    return summary


def run_stages(
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    configs,
    iterations: int = 3,
    steps: int = 16,
    names=tuple(STAGE_FILES),
    progress=print,
    on_stage=lambda name, result: None,
) -> ValidationRun:
    """The stages in `names` (accuracy, reproducibility, performance, ops), in that order, each as its typed
    report; a stage that fails is recorded as a StageError (its reason) and the others still run.
    `on_stage(name, result)` hears each one."""
    from voxport.validate.reproducibility import run_reproducibility

    stages = {
        "accuracy": lambda: run_accuracy(source, device, dtype, progress=progress),
        "reproducibility": lambda: run_reproducibility(source, device, dtype, steps=steps, progress=progress),
        "performance": lambda: run_benchmark(source, device, dtype, configs, iterations, progress=progress),
        "ops": lambda: run_ops(source, device, dtype, device.type, replay_device=device, progress=progress),
    }
    results = ValidationRun(model=str(source), dtype=dtype_name(dtype))
    for number, name in enumerate(names, start=1):
        progress(f"[{number}/{len(names)}] {name}")
        result: BaseModel
        try:
            result = REPORTS[name].model_validate(stages[name]())
        except Exception as error:
            result = StageError(error=f"{type(error).__name__}: {first_line(error)}")
            progress(f"[{number}/{len(names)}] {name} did not complete: {result.error}")
        setattr(results, name, result)
        on_stage(name, result)
    return results


def _plot(draw, result: BaseModel | None, path: Path) -> Path | None:
    return None if result is None or isinstance(result, StageError) else draw(result, path)
