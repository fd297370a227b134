"""Results for people: a Markdown summary with the tables, and PNG plots beside it."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from voxport.runtime.files import replaced_atomically  # noqa: E402

VERDICT_COLOURS = {"PASS": "tab:green", "WARN": "tab:orange", "FAIL": "tab:red"}


def write_json(path: Path, data: dict) -> Path:
    with replaced_atomically(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    return path


def plot_drift(accuracy: dict, path: Path) -> Path | None:
    layers = accuracy.get("layers") or []
    if not layers:
        return None
    figure, axis = plt.subplots(figsize=(max(6, len(layers) * 0.35), 4))
    errors = [max(layer["relative_error"], 1e-12) for layer in layers]
    axis.bar(range(len(layers)), errors, color=[VERDICT_COLOURS[layer["verdict"]] for layer in layers])
    axis.set_yscale("log")
    axis.set_xticks(range(len(layers)), [layer["module"] for layer in layers], rotation=90, fontsize=7)
    axis.set_ylabel("relative L2 error vs CPU float32")
    axis.set_title(f"Per-block drift: {accuracy['target']['device']} {accuracy['target']['dtype']}")
    return _save(figure, path)


def plot_performance(performance: dict, path: Path) -> Path | None:
    configs = performance.get("configs") or []
    if not configs:
        return None
    names = [entry["config"] for entry in configs]
    figure, (latency, speed) = plt.subplots(1, 2, figsize=(11, 4))
    latency.bar(names, [entry["latency_mean_seconds"] for entry in configs], color="tab:blue")
    latency.set_ylabel("latency, mean (s)")
    latency.tick_params(axis="x", rotation=45)
    if all(entry["rtf"] is not None for entry in configs):
        speed.bar(names, [entry["rtf"] for entry in configs], color="tab:purple")
        speed.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        speed.set_ylabel("real-time factor (compute s / audio s)")
    else:
        speed.bar(names, [entry["steps_per_second"] for entry in configs], color="tab:purple")
        speed.set_ylabel(f"{performance['step_unit']}s per second")
    speed.tick_params(axis="x", rotation=45)
    figure.suptitle(f"{performance['device_name']} ({performance['dtype']})")
    return _save(figure, path)


def plot_memory(performance: dict, path: Path) -> Path | None:
    configs = performance.get("configs") or []
    if not configs:
        return None
    names = [entry["config"] for entry in configs]
    figure, axis = plt.subplots(figsize=(7, 4))
    series = [("peak_allocated_bytes", "device allocated"), ("peak_reserved_bytes", "device reserved"),
              ("peak_process_rss_bytes", "process RSS")]
    shown = [(key, label) for key, label in series if configs[0][key] is not None]
    width = 0.8 / len(shown)
    for index, (key, label) in enumerate(shown):
        axis.bar([i + index * width for i in range(len(names))], [entry[key] / 2**30 for entry in configs],
                 width=width, label=label)
    axis.set_xticks([i + width * (len(shown) - 1) / 2 for i in range(len(names))], names, rotation=45)
    axis.set_ylabel("peak memory (GiB)")
    axis.legend()
    return _save(figure, path)


def summary_markdown(results: dict, plots: dict[str, Path | None], environment: dict) -> str:
    """One page: what ran where, the verdicts and tables of every stage, the plots, the environment."""
    lines = [f"# voxport report: {results['model']}", "",
             f"Target: `{environment['device']}` ({environment['device_name']}), dtype {results['dtype']}.", ""]
    lines += _stage("Accuracy against CPU float32", results.get("accuracy"), accuracy_tables)
    lines += _stage("Reproducibility", results.get("reproducibility"), reproducibility_table)
    lines += _stage("Performance", results.get("performance"), performance_table)
    lines += _stage("Operator coverage", results.get("ops"), ops_table)
    shown = {name: path for name, path in plots.items() if path is not None}
    if shown:
        lines += ["## Plots", ""] + [f"![{name}]({path.name})" for name, path in shown.items()] + [""]
    lines += ["## Environment", "", "| key | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in environment.items()]
    return "\n".join(lines) + "\n"


def _stage(title: str, result: dict | None, tables) -> list[str]:
    lines = [f"## {title}", ""]
    if result is None:
        return lines + ["Not run.", ""]
    if "error" in result:
        return lines + [f"**Did not complete:** {result['error']}", ""]
    return lines + tables(result) + [""]


def accuracy_tables(accuracy: dict) -> list[str]:
    lines = [f"Verdict **{accuracy['verdict']}**; target forward {accuracy['speedup']:.2f}x the reference's speed. "
             f"First drifting block: {accuracy['first_drift_module'] or 'none'}; largest step: "
             f"{accuracy['largest_step_module'] or 'none'}.", "",
             "| output | cosine | max abs | mean abs | relative | within 0.1% | top-1 | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for name, entry in accuracy["outputs"].items():
        top1 = "" if entry["top1_agreement"] is None else f"{entry['top1_agreement']:.4f}"
        lines.append(f"| {name} | {entry['cosine']:.6f} | {entry['max_abs']:.3g} | {entry['mean_abs']:.3g} | "
                     f"{entry['relative_error']:.3g} | {entry['within_0_1_percent']:.3f} | {top1} | "
                     f"{entry['verdict']} |")
    if accuracy["layers"]:
        lines += ["", "| block | cosine | relative | verdict |", "|---|---|---|---|"]
        lines += [f"| {layer['module']} | {layer['cosine']:.6f} | {layer['relative_error']:.3g} | {layer['verdict']} |"
                  for layer in accuracy["layers"]]
    return lines


def reproducibility_table(repro: dict) -> list[str]:
    repeat, against = repro["repeat"], repro["against_reference"]
    divergence = "none" if repeat["first_divergence"] is None else f"step {repeat['first_divergence']}"
    until = "every step" if against["agree_until_step"] is None else f"step {against['agree_until_step']}"
    return [f"{repro['steps']} greedy {repro['step_unit']}s.", "",
            "| check | result |", "|---|---|",
            f"| same tokens twice | {repeat['token_match_rate']:.1%} (first divergence: {divergence}) |",
            f"| identical audio twice | {repeat['identical_audio']} |",
            f"| tokens equal to CPU float32 | {against['token_match_rate']:.1%} |",
            f"| reference in target top-{against['top_k']} | until {until} "
            f"({against['steps_in_top_k']} of {repro['steps']} steps) |"]


def performance_table(performance: dict) -> list[str]:
    bandwidth = performance["bandwidth_bytes_per_second"]
    load = performance["load_breakdown_seconds"]
    unit = performance["step_unit"]
    lines = [f"On {performance['device_name']} ({performance['dtype']}). Load {performance['total_load_seconds']:.2f} s = "
             + " + ".join(f"{name.replace('_', ' ')} {seconds:.2f}" for name, seconds in load.items()) + ".",
             f"{performance['weight_bytes_per_step'] / 1e9:.3f} GB of weights read per {unit}; memory bandwidth "
             + (f"{bandwidth / 1e9:.1f} GB/s ({performance['bandwidth_source']})" if bandwidth
                else "unknown (pass --bandwidth-gbs)") + ".", "",
             f"| config | mean s | p50 s | p90 s | {unit}s/s | ms/{unit} | bound ms/{unit} | bound fraction | RTF | "
             "x real time | peak device GiB | peak RSS GiB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for entry in performance["configs"]:
        def number(value, fmt, scale=1.0):
            return "" if value is None else format(value * scale, fmt)
        device_peak = None if entry["peak_allocated_bytes"] is None else entry["peak_allocated_bytes"] / 2**30
        lines.append(f"| {entry['config']} | {entry['latency_mean_seconds']:.3f} | {entry['latency_p50_seconds']:.3f} | "
                     f"{entry['latency_p90_seconds']:.3f} | {entry['steps_per_second']:.2f} | "
                     f"{number(entry['step_seconds'], '.1f', 1e3)} | {number(entry['bound_step_seconds'], '.1f', 1e3)} | "
                     f"{number(entry['bound_fraction'], '.2f')} | {number(entry['rtf'], '.3f')} | "
                     f"{number(entry['real_time_multiple'], '.2f')} | {number(device_peak, '.2f')} | "
                     f"{entry['peak_process_rss_bytes'] / 2**30:.2f} |")
    if performance.get("stages"):
        lines += ["", "| stage | value |", "|---|---|"]
        lines += [f"| {name.replace('_', ' ')} | {value:.4g} |" for name, value in performance["stages"].items()
                  if value is not None]
    return lines


def ops_table(ops: dict) -> list[str]:
    kernels = (f"Missing kernels: {', '.join(ops['missing_kernels']) or 'none'}." if ops["backend_installed"] else
               f"The {ops['target']} backend is not installed here, so kernels were not checked; the known-gap "
               f"table below is what coverage was judged by.")
    lines = [f"{ops['distinct_ops']} distinct aten ops traced on {ops['traced_on']} in {ops['dtype']} for target "
             f"`{ops['target']}`. {kernels} Known gaps hit: {', '.join(ops['gaps_hit']) or 'none'}.", ""]
    if ops["known_gaps"]:
        lines += ["| known gap | ops | problem | voxport's fix |", "|---|---|---|---|"]
        lines += [f"| {gap['when']} | {', '.join(gap['ops'])} | {gap['problem']} | {gap['fix']} |"
                  for gap in ops["known_gaps"]]
    if ops.get("replay"):
        lines += ["", "Worst ops replayed on the target against CPU float32:", "",
                  "| op | input dtypes | relative | max abs |", "|---|---|---|---|"]
        lines += [f"| {entry['op']} | {', '.join(entry['input_dtypes'])} | {entry['relative_error']:.3g} | "
                  f"{entry['max_abs']:.3g} |" for entry in ops["replay"]["worst"]]
    return lines


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    with replaced_atomically(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
    return path
