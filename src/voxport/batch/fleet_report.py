"""The fleet's report: fleet.json for machines; summary.md (targets side by side) and plots for people."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import matplotlib.pyplot as plt
from pydantic import BaseModel

from voxport.runtime.files import replaced_atomically
from voxport.validate.report import save_figure  # also selects matplotlib's file-only backend
from voxport.validate.reports import (
    AccuracyReport,
    ConfigResult,
    FleetReport,
    FleetTarget,
    PerformanceReport,
    ReproReport,
    StageError,
    write_report,
)

Report = TypeVar("Report", bound=BaseModel)


def write_fleet_report(out: Path, source: str, reference: FleetTarget, targets: dict[str, FleetTarget]) -> Path:
    """fleet.json, accuracy.png, performance.png and summary.md in `out`; returns summary.md's path."""
    out.mkdir(parents=True, exist_ok=True)
    write_report(out / "fleet.json", FleetReport(model=str(source), reference=reference, targets=targets))
    plots = {
        "accuracy by target": plot_accuracy(targets, out / "accuracy.png"),
        "speed by target": plot_speed(reference, targets, out / "performance.png"),
    }
    summary = out / "summary.md"
    with replaced_atomically(summary) as temporary:
        temporary.write_text(fleet_markdown(source, reference, targets, plots))
    return summary


def fleet_markdown(
    source: str, reference: FleetTarget, targets: dict[str, FleetTarget], plots: dict[str, Path | None]
) -> str:
    lines = [
        f"# voxport fleet report: {source}",
        "",
        f"{len(targets)} targets, each validated on its own node against CPU float32; the reference's "
        f"benchmark ran once on {reference.node}.",
        "",
        "| target | node | device | accuracy | first drifting block | worst output error | same tokens twice "
        "| tokens equal to CPU float32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_target_row(name, result) for name, result in targets.items()]
    lines += [
        "",
        "## Speed",
        "",
        "Mean latency in seconds per benchmark config (real-time factor in brackets where the model makes audio).",
        "",
    ]
    columns = {"CPU float32 (reference)": reference, **targets}
    lines += ["| config | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for config in _configs(columns.values()):
        lines.append(f"| {config} | " + " | ".join(_latency(result, config) for result in columns.values()) + " |")
    shown = {name: path for name, path in plots.items() if path is not None}
    if shown:
        lines += ["", "## Plots", ""] + [f"![{name}]({path.name})" for name, path in shown.items()]
    return "\n".join(lines) + "\n"


def plot_accuracy(targets: dict[str, FleetTarget], path: Path) -> Path | None:
    """Relative error of every compared output, one group of bars per output, one bar per target (none where
    the output could not be compared)."""
    measured = {
        name: {
            output: max(entry.relative_error, 1e-12)
            for output, entry in accuracy.outputs.items()
            if entry.relative_error is not None
        }
        for name, accuracy in ((name, _stage(result, "accuracy", AccuracyReport)) for name, result in targets.items())
        if isinstance(accuracy, AccuracyReport)
    }
    if not measured:
        return None
    outputs = sorted({output for entries in measured.values() for output in entries})
    figure, axis = plt.subplots(figsize=(max(6, 1.5 * len(outputs) * len(measured)), 4))
    _grouped_bars(
        axis, outputs, {name: [entries.get(output, 0.0) for output in outputs] for name, entries in measured.items()}
    )
    axis.set_yscale("log")
    axis.set_ylabel("relative L2 error vs CPU float32")
    axis.set_title("Accuracy by target")
    return save_figure(figure, path)


def plot_speed(reference: FleetTarget, targets: dict[str, FleetTarget], path: Path) -> Path | None:
    """Generation steps per second for every benchmark config, one bar per target and the reference."""
    columns = {"cpu:float32 (reference)": reference, **targets}
    configs = _configs(columns.values())
    if not configs:
        return None
    figure, axis = plt.subplots(figsize=(max(6, 1.2 * len(configs) * len(columns)), 4))
    _grouped_bars(
        axis,
        configs,
        {
            name: [
                0.0 if entry is None else entry.steps_per_second
                for entry in (_config(result, config) for config in configs)
            ]
            for name, result in columns.items()
        },
    )
    axis.set_ylabel("generation steps per second")
    axis.set_title("Speed by target")
    return save_figure(figure, path)


def _grouped_bars(axis, groups: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / len(series)
    for index, (name, values) in enumerate(series.items()):
        axis.bar([group + index * width for group in range(len(groups))], values, width=width, label=name)
    axis.set_xticks([group + width * (len(series) - 1) / 2 for group in range(len(groups))], groups, rotation=30)
    axis.legend(fontsize=8)


def _target_row(name: str, result: FleetTarget) -> str:
    if result.error is not None:
        return f"| {name} | {result.node} | | did not run: {result.error} | | | | |"
    accuracy = _stage(result, "accuracy", AccuracyReport)
    repro = _stage(result, "reproducibility", ReproReport)
    if isinstance(accuracy, AccuracyReport):
        verdict, drift = f"**{accuracy.verdict}**", accuracy.first_drift_module or "none"
        errors = [entry.relative_error for entry in accuracy.outputs.values() if entry.relative_error is not None]
        worst = f"{max(errors):.3g}" if errors else ""
    else:
        verdict = drift = worst = f"did not complete: {accuracy.error}"
    if isinstance(repro, ReproReport):
        twice = f"{repro.repeat.token_match_rate:.1%}"
        equal = f"{repro.against_reference.token_match_rate:.1%}"
    else:
        twice = equal = f"did not complete: {repro.error}"
    device = "" if result.environment is None else f"{result.environment.device} ({result.environment.device_name})"
    return f"| {name} | {result.node} | {device} | {verdict} | {drift} | {worst} | {twice} | {equal} |"


def _stage(result: FleetTarget, name: str, kind: type[Report]) -> Report | StageError:
    """A stage's report, or a StageError saying why there is none."""
    stage = getattr(result, name)
    return stage if isinstance(stage, (kind, StageError)) else StageError(error=result.error or "not run")


def _configs(results) -> list[str]:
    names: list[str] = []
    for result in results:
        performance = _stage(result, "performance", PerformanceReport)
        for entry in performance.configs if isinstance(performance, PerformanceReport) else []:
            names += [entry.config] if entry.config not in names else []
    return names


def _config(result: FleetTarget, config: str) -> ConfigResult | None:
    performance = _stage(result, "performance", PerformanceReport)
    entries = performance.configs if isinstance(performance, PerformanceReport) else []
    return next((entry for entry in entries if entry.config == config), None)


def _latency(result: FleetTarget, config: str) -> str:
    entry = _config(result, config)
    if entry is None:
        performance = _stage(result, "performance", PerformanceReport)
        return f"did not complete: {performance.error}" if isinstance(performance, StageError) else ""
    rtf = "" if entry.rtf is None else f" ({entry.rtf:.3f})"
    return f"{entry.latency_mean_seconds:.3f}{rtf}"
