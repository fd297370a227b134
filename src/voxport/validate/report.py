"""Results for people: a Markdown summary with the tables, and PNG plots beside it, from the typed reports
(validate.reports)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
from pydantic import BaseModel

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from voxport.runtime.bandwidth import probes_text
from voxport.runtime.files import replaced_atomically
from voxport.validate.reports import (
    AccuracyReport,
    Environment,
    OpsReport,
    PerformanceReport,
    ReproReport,
    StageError,
    ValidationRun,
)

VERDICT_COLOURS = {"PASS": "tab:green", "WARN": "tab:orange", "FAIL": "tab:red"}


def plot_drift(accuracy: AccuracyReport, path: Path) -> Path | None:
    """Each block's error relative to the benchmark's, in execution order, with the PASS and WARN limits."""
    blocks = [block for block in accuracy.blocks if block.relative_ratio is not None]
    if not blocks:
        return None
    figure, axis = plt.subplots(figsize=(max(6, len(blocks) * 0.3), 4))
    ratios = [max(block.relative_ratio or 0.0, 1e-3) for block in blocks]
    axis.bar(range(len(blocks)), ratios, color=[VERDICT_COLOURS[block.verdict] for block in blocks])
    for limit, colour in zip(accuracy.limits.relative_ratio, ("tab:orange", "tab:red"), strict=True):
        axis.axhline(limit, color=colour, linestyle="--", linewidth=1)
    axis.set_yscale("log")
    axis.set_xticks(range(len(blocks)), [block.module for block in blocks], rotation=90, fontsize=6)
    axis.set_ylabel("relative error / benchmark's")
    axis.set_title(
        f"Isolated blocks: {accuracy.target.device} {accuracy.target.dtype} "
        f"against the CPU {accuracy.benchmark.dtype} benchmark"
    )
    return save_figure(figure, path)


def plot_performance(performance: PerformanceReport, path: Path) -> Path | None:
    configs = performance.configs
    if not configs:
        return None
    names = [entry.config for entry in configs]
    figure, (latency, speed) = plt.subplots(1, 2, figsize=(11, 4))
    latency.bar(names, [entry.latency_mean_seconds for entry in configs], color="tab:blue")
    latency.set_ylabel("latency, mean (s)")
    latency.tick_params(axis="x", rotation=45)
    if all(entry.rtf is not None for entry in configs):
        speed.bar(names, [entry.rtf for entry in configs], color="tab:purple")
        speed.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        speed.set_ylabel("real-time factor (compute s / audio s)")
    else:
        speed.bar(names, [entry.steps_per_second for entry in configs], color="tab:purple")
        speed.set_ylabel(f"{performance.step_unit}s per second")
    speed.tick_params(axis="x", rotation=45)
    figure.suptitle(f"{performance.device_name} ({performance.dtype})")
    return save_figure(figure, path)


def plot_memory(performance: PerformanceReport, path: Path) -> Path | None:
    configs = performance.configs
    if not configs:
        return None
    names = [entry.config for entry in configs]
    figure, axis = plt.subplots(figsize=(7, 4))
    series = [
        ("peak_allocated_bytes", "device allocated"),
        ("peak_reserved_bytes", "device reserved"),
        ("peak_process_rss_bytes", "process RSS"),
    ]
    shown = [(key, label) for key, label in series if getattr(configs[0], key) is not None]
    width = 0.8 / len(shown)
    for index, (key, label) in enumerate(shown):
        axis.bar(
            [i + index * width for i in range(len(names))],
            [getattr(entry, key) / 2**30 for entry in configs],
            width=width,
            label=label,
        )
    axis.set_xticks([i + width * (len(shown) - 1) / 2 for i in range(len(names))], names, rotation=45)
    axis.set_ylabel("peak memory (GiB)")
    axis.legend()
    return save_figure(figure, path)


def summary_markdown(results: ValidationRun, plots: dict[str, Path | None], environment: Environment) -> str:
    """One page: what ran where, the verdicts and tables of every stage, the plots, the environment."""
    lines = [
        f"# voxport report: {results.model}",
        "",
        f"Target: `{environment.device}` ({environment.device_name}), dtype {results.dtype}.",
        "",
    ]
    lines += _stage("Accuracy against CPU float32", results.accuracy, accuracy_tables)
    lines += _stage("Reproducibility", results.reproducibility, reproducibility_table)
    lines += _stage("Performance", results.performance, performance_table)
    lines += _stage("Operator coverage", results.ops, ops_table)
    shown = {name: path for name, path in plots.items() if path is not None}
    if shown:
        lines += ["## Plots", ""] + [f"![{name}]({path.name})" for name, path in shown.items()] + [""]
    lines += ["## Environment", "", "| key | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in environment.model_dump().items()]
    return "\n".join(lines) + "\n"


def _stage(title: str, result: BaseModel | None, tables: Callable[..., list[str]]) -> list[str]:
    lines = [f"## {title}", ""]
    if result is None:
        return [*lines, "Not run.", ""]
    if isinstance(result, StageError):
        return [*lines, f"**Did not complete:** {result.error}", ""]
    return [*lines, *tables(result), ""]


def _reason(entry) -> str:
    """': REASON' after a verdict, where the entry gives one."""
    return "" if entry.reason is None else f": {entry.reason}"


def accuracy_tables(accuracy: AccuracyReport) -> list[str]:
    first, op = accuracy.first_drift_module, accuracy.first_diverging_op
    lines = [
        f"Verdict **{accuracy.verdict}** over {len(accuracy.examples)} examples "
        f"({', '.join(accuracy.examples)}). First block that is not PASS: {first or 'none'}."
    ]
    if op is not None:
        where = f"op {op.index} ({op.op})" if op.op else "no op"
        lines.append(f"First op inside it that parts from the reference: {where}; {op.reason or ''}".rstrip("; "))
    phases = getattr(accuracy, "phases", None)
    if phases:
        lines.append(
            "Phases: "
            + ", ".join(
                f"{name.replace('_', ' ')} {entry['seconds']:.1f} s (peak RSS "
                f"{entry['peak_rss_bytes'] / 2**30:.2f} GiB)"
                for name, entry in phases.items()
            )
            + "."
        )
    lines += ["", "| example | verdict | first block not PASS |", "|---|---|---|"]
    lines += [
        f"| {name} | {entry.verdict} | {entry.first_drift_module or ''} |" for name, entry in accuracy.examples.items()
    ]
    lines += [
        "",
        "| block | stage | calls | relative error | benchmark's | ratio | max ratio | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for block in accuracy.blocks:
        if block.relative_ratio is None:
            lines.append(
                f"| {block.module} | {block.stage} | {block.calls} | | | | | {block.verdict}: {block.reason or ''} |"
            )
            continue
        calls = str(block.calls) if block.replayed == block.calls else f"{block.replayed} of {block.calls}"
        lines.append(
            f"| {block.module} | {block.stage} | {calls} | {block.relative_error:.3g} | "
            f"{block.benchmark_relative_error:.3g} | {block.relative_ratio:.2f} | "
            f"{block.max_ratio:.2f} | {block.verdict}{_reason(block)} |"
        )
    lines += [
        "",
        "Teacher-forced outputs of the whole model (drift accumulated through every block):",
        "",
        "| output | cosine | relative | ratio | top-1 | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in accuracy.outputs.items():
        if entry.cosine is None:
            lines.append(f"| {name} | | | | | {entry.verdict}: {entry.reason or ''} |")
            continue
        top1 = "" if entry.top1_agreement is None else f"{entry.top1_agreement:.4f}"
        ratio = "" if entry.relative_ratio is None else f"{entry.relative_ratio:.2f}"
        lines.append(
            f"| {name} | {entry.cosine:.6f} | {entry.relative_error:.3g} | {ratio} | {top1} | {entry.verdict} |"
        )
    return lines


def reproducibility_table(repro: ReproReport) -> list[str]:
    repeat, against = repro.repeat, repro.against_reference

    def step(value, none="none"):
        return none if value is None else f"step {value}"

    reference = f"{against.device} {against.dtype}"
    return [
        f"Verdict **{repro.verdict}**{': ' + '; '.join(repro.problems) if repro.problems else ''}. "
        f"{repro.steps} {repro.step_unit}s, greedy and sampled from seed {repro.seed}.",
        "",
        "| check | result |",
        "|---|---|",
        f"| same greedy tokens twice | {repeat.token_match_rate:.1%} (first divergence: "
        f"{step(repeat.first_divergence)}) |",
        f"| same sampled tokens twice | {repeat.sampled_token_match_rate:.1%} (first divergence: "
        f"{step(repeat.sampled_first_divergence)}) |",
        f"| identical audio twice | {repeat.identical_audio} |",
        f"| greedy tokens equal to {reference} | {against.token_match_rate:.1%} (streams part at "
        f"{step(against.greedy_parts_at_step, 'no step')}) |",
        f"| sampled stream against {reference} | parts at {step(against.sampled_parts_at_step, 'no step')} |",
        f"| reference in target top-{against.top_k} | until {step(against.agree_until_step, 'every step')} "
        f"({against.steps_in_top_k} of {repro.steps} steps) |",
        f"| teacher-forced logits against {reference} (through the engine) | largest difference "
        f"{against.logits_gap:.2e} of the largest logit |",
    ]


def _probed(performance: PerformanceReport) -> str:
    """The figures a probed bandwidth was picked from: how far the machine drifted around the runs."""
    probes = performance.bandwidth_probes_bytes_per_second
    return f"; the faster of {probes_text(probes)}" if probes else ""


def performance_table(performance: PerformanceReport) -> list[str]:
    bandwidth = performance.bandwidth_bytes_per_second
    load = performance.load_breakdown_seconds
    unit = performance.step_unit
    lines = [
        f"On {performance.device_name} ({performance.dtype}). Load {performance.total_load_seconds:.2f} s = "
        + " + ".join(f"{name.replace('_', ' ')} {seconds:.2f}" for name, seconds in load.items())
        + ".",
        f"{performance.weight_bytes_per_step / 1e9:.3f} GB of weights read per {unit}; memory bandwidth "
        + (
            f"{bandwidth / 1e9:.1f} GB/s ({performance.bandwidth_source}{_probed(performance)})"
            if bandwidth
            else "unknown (pass --bandwidth-gbs)"
        )
        + ".",
        "",
        f"| config | mean s | p50 s | p90 s | {unit}s/s | ms/{unit} | bound ms/{unit} | bound fraction | RTF | "
        "x real time | peak device GiB | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in performance.configs:

        def number(value, fmt, scale=1.0):
            return "" if value is None else format(value * scale, fmt)

        device_peak = None if entry.peak_allocated_bytes is None else entry.peak_allocated_bytes / 2**30
        lines.append(
            f"| {entry.config} | {entry.latency_mean_seconds:.3f} | {entry.latency_p50_seconds:.3f} | "
            f"{entry.latency_p90_seconds:.3f} | {entry.steps_per_second:.2f} | "
            f"{number(entry.step_seconds, '.1f', 1e3)} | {number(entry.bound_step_seconds, '.1f', 1e3)} | "
            f"{number(entry.bound_fraction, '.2f')} | {number(entry.rtf, '.3f')} | "
            f"{number(entry.real_time_multiple, '.2f')} | {number(device_peak, '.2f')} | "
            f"{entry.peak_process_rss_bytes / 2**30:.2f} |"
        )
    if performance.stages:
        lines += ["", "| stage | value |", "|---|---|"]
        lines += [
            f"| {name.replace('_', ' ')} | {value:.4g} |"
            for name, value in performance.stages.items()
            if value is not None
        ]
    return lines


def ops_table(ops: OpsReport) -> list[str]:
    kernels = (
        f"Missing kernels: {', '.join(ops.missing_kernels) or 'none'}."
        if ops.backend_installed
        else f"The {ops.target} backend is not installed here, so kernels were not checked; the known-gap "
        f"table below is what coverage was judged by."
    )
    lines = [
        f"{ops.distinct_ops} distinct aten ops traced on {ops.traced_on} in {ops.dtype} for target "
        f"`{ops.target}`. {kernels} Known gaps hit: {', '.join(ops.gaps_hit) or 'none'}.",
        "",
    ]
    if ops.known_gaps:
        lines += ["| known gap | ops | problem | voxport's fix |", "|---|---|---|---|"]
        lines += [f"| {gap.when} | {', '.join(gap.ops)} | {gap.problem} | {gap.fix} |" for gap in ops.known_gaps]
    replay = ops.replay
    if replay is not None:
        sampled = (
            f" {replay.ops_sampled} ops ran more than {replay.samples_per_op} times: those calls were "
            f"sampled (the first {replay.samples_per_op})."
            if replay.ops_sampled
            else ""
        )
        lines += [
            "",
            f"Replayed on {replay.device}: verdict **{replay.verdict}** over {replay.ops_compared} "
            f"ops, each against CPU float32 relative to the CPU's own error in its dtypes.{sampled}",
            "",
            "| op | input dtypes | calls | replayed | relative | ratio | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for entry in replay.worst:
            relative = "" if entry.relative_error is None else f"{entry.relative_error:.3g}"
            ratio = "" if entry.relative_ratio is None else f"{entry.relative_ratio:.2f}"
            lines.append(
                f"| {entry.op} | {', '.join(entry.input_dtypes)} | {entry.calls} | {entry.replayed} | "
                f"{relative} | {ratio} | {entry.verdict}{_reason(entry)} |"
            )
        if replay.skipped:
            lines += ["", "Not replayed:", ""] + [
                f"- {entry.op} ({', '.join(entry.input_dtypes)}): {entry.reason}" for entry in replay.skipped
            ]
    return lines


def save_figure(figure, path: Path) -> Path:
    figure.tight_layout()
    with replaced_atomically(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
    return path
