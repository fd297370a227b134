"""Accuracy of a port, block by block, over every stage that makes tokens or audio.

1. The reference (`--reference-model`, default the model itself) runs on the CPU in float32; every stage's
   inputs and output and every call of its blocks are recorded (validate.capture).
2. The benchmark: the reference's checkpoint on the CPU in the target's dtype replays every stage and block
   alone on the recorded inputs: what a correct port at that precision gets.
3. The target (`--model` on `--device`/`--dtype`) replays the same.
Every pass on the CPU streams its weights (runtime.streaming): blocks are read from the checkpoint as they run
and a few are held at once (`--max-memory` bounds the process), so the float32 reference of a model larger
than memory still runs; a target on an accelerator loads whole.
Each block is judged by its error relative to the benchmark's (validate.verdicts); the first block in execution
order that is not PASS is `first_drift_module`, and for a module block the first op inside it that parts from
the reference is named (validate.ops.first_diverging_op). The teacher-forced outputs of the whole model are
compared too (accumulated drift); the overall verdict is the worst of blocks and outputs.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from voxport.errors import InputError
from voxport.models.registry import load_model
from voxport.runtime.devices import dtype_name
from voxport.runtime.streaming import Streaming
from voxport.validate.capture import StageRecord, record_stage, replay_call, run_stage
from voxport.validate.metrics import compare
from voxport.validate.phases import BarFactory, no_bar, phase
from voxport.validate.verdicts import LIMITS, errors, judge, worst

CPU = torch.device("cpu")
MAX_CALLS = 12  # calls of one block replayed per example; more are sampled evenly


def run_accuracy(
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    reference_source: str | None = None,
    texts: list[str] | None = None,
    audios: list[str] | None = None,
    locate_ops: bool = True,
    example_names: list[str] | None = None,
    progress=print,
    bar: BarFactory = no_bar,
    streaming: Streaming | None = Streaming(),
    baseline: Baseline | None = None,
) -> dict:
    """Judge `source` on `device`/`dtype` against `reference_source` (default: the same) on the CPU in float32.
    `bar(total, unit, description)` shows the replay passes' progress over blocks (a terminal's progress bar).
    `streaming`: how passes on the CPU hold their weights (None: whole models). `baseline`: the reference and
    benchmark recorded earlier (`record_baseline`) for the same reference and dtype, to judge one more target
    against (then `texts`, `audios` and `example_names` are the baseline's)."""
    reference_source = reference_source or source
    started = time.perf_counter()
    if baseline is None:
        baseline = record_baseline(reference_source, dtype, texts, audios, example_names, progress, bar, streaming)
    elif (baseline.source, baseline.dtype) != (str(reference_source), dtype):
        raise ValueError(
            f"the baseline is {baseline.source} in {dtype_name(baseline.dtype)}, "
            f"not {reference_source} in {dtype_name(dtype)}"
        )
    reference, (benchmark_results, benchmark_outputs) = baseline.reference, baseline.benchmark
    examples, records, naming = reference.examples, reference.records, reference.naming
    phases = dict(baseline.phases)
    if str(source) == str(reference_source) and device.type == "cpu":
        progress("accuracy: the target is the benchmark (same checkpoint, device and dtype)")
        target_results, target_outputs = benchmark_results, benchmark_outputs
    else:
        progress(f"accuracy: target {source} on {device}/{dtype_name(dtype)}")
        with phase("target", phases):
            target_results, target_outputs = replay_pass(
                source, device, dtype, records, examples, bar, "target", streaming
            )

    per_example = {
        name: judge_blocks(records[name], benchmark_results[name], target_results[name], naming) for name in examples
    }
    blocks = merge_blocks(per_example)
    outputs = judge_outputs(reference.outputs, benchmark_outputs, target_outputs)
    first = next((block for block in blocks if block["verdict"] != "PASS"), None)
    result = {
        "model": str(source),
        "reference": {"model": str(reference_source), "device": "cpu", "dtype": "float32"},
        "benchmark": {"model": str(reference_source), "device": "cpu", "dtype": dtype_name(dtype)},
        "target": {"model": str(source), "device": str(device), "dtype": dtype_name(dtype)},
        "limits": {
            "relative_ratio": [LIMITS.pass_relative, LIMITS.warn_relative],
            "max_ratio": [LIMITS.pass_max, LIMITS.warn_max],
        },
        "examples": {
            name: {
                "verdict": worst(
                    [
                        *(b["verdict"] for b in judged),
                        *(o["verdict"] for key, o in outputs.items() if key.startswith(name + "/")),
                    ]
                ),
                "first_drift_module": next((b["module"] for b in judged if b["verdict"] != "PASS"), None),
            }
            for name, judged in per_example.items()
        },
        "blocks": blocks,
        "outputs": outputs,
        "first_drift_module": None if first is None else first["module"],
        "first_diverging_op": None,
        "verdict": worst([*(block["verdict"] for block in blocks), *(entry["verdict"] for entry in outputs.values())]),
    }
    if first is not None and first["kind"] == "module" and locate_ops:
        from voxport.validate.ops import first_diverging_op

        progress(f"accuracy: looking for the first op of {first['module']} that parts from the reference")
        example = next(
            name
            for name, judged in per_example.items()
            if any(b["module"] == first["module"] and b["verdict"] != "PASS" for b in judged)
        )
        call = next(record.calls[first["path"]][0] for record in records[example] if first["path"] in record.calls)
        with phase("op_search", phases):
            result["first_diverging_op"] = {
                "block": first["module"],
                **first_diverging_op(first["path"], call, (reference_source, source), device, dtype),
            }
    result["seconds"] = time.perf_counter() - started
    result["phases"] = phases  # seconds and peak process RSS of each
    return result


@dataclass
class Reference:
    """What the CPU float32 reference recorded: the examples, every stage's record, the teacher-forced outputs."""

    examples: dict
    records: dict[str, list[StageRecord]]
    outputs: dict
    naming: Callable[[str], str]  # a module's checkpoint key prefix


@dataclass
class Baseline:
    """What every target at one dtype is judged against: the CPU float32 reference's recording and the
    benchmark's replay of it (the reference checkpoint on the CPU in that dtype), with each phase's seconds and
    peak memory. Recorded once, it serves any number of targets (`run_accuracy(..., baseline=)`)."""

    source: str
    dtype: torch.dtype
    reference: Reference
    benchmark: tuple[dict, dict]  # the replay's results and teacher-forced outputs (see `replay_pass`)
    phases: dict[str, dict]


def record_baseline(
    source: str,
    dtype: torch.dtype,
    texts: list[str] | None = None,
    audios: list[str] | None = None,
    example_names: list[str] | None = None,
    progress=print,
    bar: BarFactory = no_bar,
    streaming: Streaming | None = Streaming(),
) -> Baseline:
    """Record `source`'s reference on the CPU in float32, then replay it on the CPU in `dtype`."""
    phases: dict[str, dict] = {}
    progress(f"accuracy: recording the reference {source} on cpu/float32")
    with phase("reference", phases):
        reference = record_reference(source, texts, audios, example_names, streaming)
    progress(f"accuracy: benchmark {source} on cpu/{dtype_name(dtype)}")
    with phase("benchmark", phases):
        benchmark = replay_pass(source, CPU, dtype, reference.records, reference.examples, bar, "benchmark", streaming)
    return Baseline(str(source), dtype, reference, benchmark, phases)


def record_reference(
    source: str,
    texts: list[str] | None = None,
    audios: list[str] | None = None,
    example_names: list[str] | None = None,
    streaming: Streaming | None = Streaming(),
) -> Reference:
    """Load `source` on the CPU in float32 (streamed, unless `streaming` is None), record every stage of every
    example and the teacher-forced outputs; free the model."""
    model = load_model(source, CPU, torch.float32, streaming=streaming)
    examples = model.accuracy_examples(texts, audios)
    if example_names:
        unknown = [name for name in example_names if name not in examples]
        if unknown:
            raise InputError(f"unknown example {', '.join(unknown)}: expected {', '.join(examples)}")
        examples = {name: examples[name] for name in example_names}
    records = {
        name: [record_stage(model, stage) for stage in model.accuracy_stages(example)]
        for name, example in examples.items()
    }
    outputs = {name: _outputs(model, example) for name, example in examples.items()}
    naming = getattr(model, "checkpoint_name", str)
    del model
    gc.collect()
    return Reference(examples, records, outputs, naming)


def replay_pass(
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    records: dict,
    examples: dict,
    bar: BarFactory = no_bar,
    label: str = "replay",
    streaming: Streaming | None = None,
) -> tuple:
    """Load `source` on `device`/`dtype` (its weights streamed on the CPU), replay every stage and block, run its
    outputs; free it."""
    model = load_model(source, device, dtype, streaming=streaming if device.type == "cpu" else None)
    results = replay(model, records, bar, label)
    outputs = {name: _outputs(model, example) for name, example in examples.items()}
    del model
    gc.collect()
    return results, outputs


def replay(
    model, records: dict[str, list[StageRecord]], bar: BarFactory = no_bar, label: str = "replay"
) -> dict[str, dict[str, list[torch.Tensor] | str]]:
    """Every stage and every recorded block call, alone on `model`: outputs per block, or why it failed.
    `bar(total, unit, label)` hears the progress over blocks (a terminal's progress bar)."""
    results = {}
    total = sum(1 + len(record.calls) for stages in records.values() for record in stages)
    done = 0
    with bar(total, "block", label) as update:
        for example, stages in records.items():
            outcome: dict[str, list[torch.Tensor] | str] = {}
            for record in stages:
                outcome[record.name] = _attempt(lambda: [run_stage(model, record.run, record.inputs)])
                for name, calls in record.calls.items():
                    outcome[name] = _attempt(lambda: [replay_call(model, name, calls[i]) for i in sampled(len(calls))])
                    done += 1
                    update(done)
                done += 1
                update(done)
            results[example] = outcome
    return results


def sampled(count: int) -> list[int]:
    """Up to MAX_CALLS call indices spread evenly over `count`, first and last included."""
    if count <= MAX_CALLS:
        return list(range(count))
    return sorted({round(i * (count - 1) / (MAX_CALLS - 1)) for i in range(MAX_CALLS)})


def judge_blocks(
    stages: list[StageRecord], benchmark: dict, target: dict, naming: Callable[[str], str] = str
) -> list[dict]:
    """Each block of one example, in execution order (a stage's blocks, then the stage whole), modules named
    by their checkpoint key prefix."""
    judged = []
    for record in stages:
        for name, calls in record.calls.items():
            expected = [calls[i].output for i in sampled(len(calls))]
            entry = _judge_block(
                naming(name), record.name, "module", expected, benchmark[name], target[name], len(calls)
            )
            judged.append({**entry, "path": name})
        judged.append(
            _judge_block(
                record.name, record.name, "stage", [record.output], benchmark[record.name], target[record.name], 1
            )
        )
    return judged


def _judge_block(
    name: str, stage: str, kind: str, reference: list[torch.Tensor], benchmark, target, calls: int
) -> dict:
    entry = {"module": name, "stage": stage, "kind": kind, "calls": calls, "replayed": len(reference)}
    if isinstance(benchmark, str):
        return {**entry, "verdict": "FAIL", "reason": f"the benchmark could not run it: {benchmark}"}
    if isinstance(target, str):
        return {**entry, "verdict": "FAIL", "reason": target}
    try:
        mismatch = next(
            (
                f"call {i}: dtype {t.dtype} where the benchmark has {b.dtype}"
                for i, (t, b) in enumerate(zip(target, benchmark))
                if t.dtype != b.dtype
            ),
            None,
        )
        target_errors = _joined_errors(reference, target)
        benchmark_errors = _joined_errors(reference, benchmark)
    except ValueError as error:
        return {**entry, "verdict": "FAIL", "reason": str(error)}
    verdict = judge(target_errors, benchmark_errors, benchmark[0].dtype)
    if mismatch and verdict["verdict"] == "PASS":
        verdict = {**verdict, "verdict": "WARN", "reason": mismatch}
    return {
        **entry,
        **target_errors.to_json(),
        "benchmark_relative_error": benchmark_errors.relative,
        "benchmark_max_relative_error": benchmark_errors.max_relative,
        **verdict,
    }


def _joined_errors(reference: list[torch.Tensor], outputs: list[torch.Tensor]):
    for index, (expected, got) in enumerate(zip(reference, outputs)):
        if tuple(expected.shape) != tuple(got.shape):
            raise ValueError(f"call {index}: shape {tuple(got.shape)} where the reference has {tuple(expected.shape)}")
    return errors(
        torch.cat([t.flatten().double() for t in reference]), torch.cat([t.flatten().double() for t in outputs])
    )


def merge_blocks(per_example: dict[str, list[dict]]) -> list[dict]:
    """One entry per block over all examples (first-seen order): the worst example's numbers and verdict."""
    merged: dict[str, dict] = {}
    for example, judged in per_example.items():
        for block in judged:
            current = merged.get(block["module"])
            candidate = {**block, "example": example}
            if current is None or _severity(candidate) > _severity(current):
                merged[block["module"]] = candidate
    return list(merged.values())


def _severity(block: dict) -> tuple:
    from voxport.validate.verdicts import ORDER

    return ORDER[block["verdict"]], block.get("relative_ratio") or 0.0


def judge_outputs(reference: dict, benchmark: dict, target: dict) -> dict:
    """The model's teacher-forced outputs per example: accumulated drift, judged against the benchmark's."""
    outputs = {}
    for example, tensors in reference.items():
        if isinstance(tensors, str):
            raise RuntimeError(f"the reference cannot run example {example}: {tensors}")
        for failed, side in ((target[example], "target"), (benchmark[example], "benchmark")):
            if isinstance(failed, str):
                outputs[f"{example}/forward"] = {"verdict": "FAIL", "reason": f"the {side} could not run it: {failed}"}
        if any(isinstance(side[example], str) for side in (target, benchmark)):
            continue
        for name, expected in tensors.items():
            key = f"{example}/{name}"
            try:
                comparison = compare(expected, target[example][name], logits="logits" in name)
                verdict = judge(
                    errors(expected, target[example][name]),
                    errors(expected, benchmark[example][name]),
                    benchmark[example][name].dtype,
                )
            except ValueError as error:
                outputs[key] = {"verdict": "FAIL", "reason": str(error)}
                continue
            outputs[key] = {**comparison.to_json(), **verdict}
    return outputs


def _outputs(model, example) -> dict[str, torch.Tensor] | str:
    return _attempt(lambda: {name: tensor.detach().cpu() for name, tensor in model.forward_logits(example).items()})


def _attempt(work: Callable):
    """The outputs, or one line saying why the port could not produce them (a FAIL, never a traceback)."""
    try:
        return work()
    except Exception as error:
        text = str(error).strip().splitlines()
        return f"{type(error).__name__}: {text[0] if text else ''}"
