"""Operator coverage: every aten op (with dtypes) a forward and a short generation use, whether the target
backend has a kernel for it, which known gaps it hits (and the fix voxport applies), and optionally how each
op's output on the target compares with CPU float32 when replayed on the recorded inputs."""

from __future__ import annotations

import gc
from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from voxport.errors import first_line
from voxport.models.base import SpeechModel
from voxport.runtime.devices import BACKENDS
from voxport.validate.verdicts import ORDER
from voxport.validate.verdicts import worst as worst_verdict

_RANDOM = ("rand", "normal", "exponential", "bernoulli", "multinomial", "uniform", "dropout")
_SAMPLE_LIMIT = 2**22  # elements: inputs kept for replay only up to this size
SAMPLES_PER_OP = 8  # calls of one (op, dtypes) kept for replay; the report says when there were more


@dataclass(frozen=True)
class KnownGap:
    target: str
    ops: tuple[str, ...]  # empty: any op
    when: str  # "complex", "not-float32", "int64" or "float64" among the inputs
    problem: str
    fix: str

    def hits(self, op: str, dtypes: tuple[str, ...]) -> bool:
        if self.ops and op not in self.ops:
            return False
        floating = [d for d in dtypes if d.startswith(("float", "bfloat"))]
        return {
            "complex": any(d.startswith("complex") for d in dtypes),
            "not-float32": any(d != "float32" for d in floating),
            "int64": "int64" in dtypes,
            "float64": "float64" in dtypes,
        }[self.when]


KNOWN_GAPS = [
    KnownGap(
        "npu",
        ("aten::abs",),
        "complex",
        "complex abs has no Ascend kernel",
        "power spectra are real^2 + imag^2 (voxport.audio.features)",
    ),
    KnownGap(
        "npu",
        ("aten::_fft_r2c", "aten::stft"),
        "not-float32",
        "Ascend's STFT takes float32 input only",
        "the audio front end runs in float32 whatever the model dtype",
    ),
    KnownGap(
        "npu",
        ("aten::cos", "aten::sin"),
        "int64",
        "cos/sin of int64 tensors fail on Ascend",
        "rotary and timestep angles are computed in float32",
    ),
    KnownGap("mps", (), "float64", "MPS has no float64", "models run in float32/16; metrics are computed on the CPU"),
    KnownGap(
        "mps",
        ("aten::_fft_r2c",),
        "not-float32",
        "MPS FFTs take float32 input only",
        "the audio front end runs in float32 whatever the model dtype",
    ),
]


class OpRecorder(TorchDispatchMode):
    """Counts aten ops by (name, input dtypes) and keeps the inputs of up to SAMPLES_PER_OP calls of each for
    replay, copied before the call runs (an in-place op's inputs as they were)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()
        self.outputs: dict[tuple, tuple[str, ...]] = {}
        self.samples: dict[tuple, list[tuple]] = {}
        self.functions: dict[tuple, object] = {}
        self.skipped: dict[tuple, str] = {}  # why an op's calls are not replayed

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        key = (_op_name(func), _dtypes((args, kwargs)))
        self.calls[key] += 1
        kept = self.samples.setdefault(key, [])
        sample = None
        if len(kept) < SAMPLES_PER_OP and key not in self.skipped:
            reason = _not_replayable(func, args, kwargs)
            if reason:
                self.skipped[key] = reason
            else:
                sample = (func, *tree_map(_host_copy, (args, kwargs)))  # per call: overloads share a name
        result = func(*args, **kwargs)
        if sample is not None:
            kept.append(sample)
        if key not in self.outputs:
            self.outputs[key] = _dtypes(result)
            self.functions[key] = func
        return result


def trace_ops(model: SpeechModel) -> OpRecorder:
    """The ops of a teacher-forced forward, a two-step generation and every accuracy stage of the first example
    (the engines, the codec, token2wav) on the model's device."""
    from voxport.validate.capture import run_stage

    inputs = model.example_inputs()
    example = next(iter(model.accuracy_examples().values()))
    stages = model.accuracy_stages(example)
    with OpRecorder() as recorder:
        model.forward_logits(inputs)
        model.greedy_tokens(inputs, 2)
        for stage in stages:
            run_stage(model, stage.run, stage.inputs)
    return recorder


def coverage(recorder: OpRecorder, target: str) -> dict:
    backend = BACKENDS[target]
    key, installed = backend.dispatch_key, backend.is_built()
    ops = []
    for (name, dtypes), calls in sorted(recorder.calls.items(), key=lambda item: (item[0][0], item[0][1])):
        gaps = [gap for gap in KNOWN_GAPS if gap.target == target and gap.hits(name, dtypes)]
        ops.append(
            {
                "op": name,
                "input_dtypes": list(dtypes),
                "output_dtypes": list(recorder.outputs[(name, dtypes)]),
                "calls": calls,
                "kernel": has_kernel(recorder.functions[(name, dtypes)], key) if installed else None,
                "known_gaps": [{"problem": gap.problem, "fix": gap.fix} for gap in gaps],
            }
        )
    return {
        "target": target,
        "backend_installed": installed,
        "distinct_ops": len({op["op"] for op in ops}),
        "ops": ops,
        "missing_kernels": sorted({op["op"] for op in ops if op["kernel"] is False}),
        "gaps_hit": sorted({op["op"] for op in ops if op["known_gaps"]}),
        "known_gaps": [
            {"ops": list(gap.ops) or ["any"], "when": gap.when, "problem": gap.problem, "fix": gap.fix}
            for gap in KNOWN_GAPS
            if gap.target == target
        ],
    }


def replay_accuracy(recorder: OpRecorder, device: torch.device, worst: int = 10) -> dict:
    """Every kept call of every op on `device` in the dtypes it ran in, judged as accuracy judges a block: its
    error against CPU float32 relative to the CPU's own error in those dtypes (validate.verdicts)."""
    from voxport.validate.verdicts import errors, judge

    cpu = torch.device("cpu")
    judged, skipped = (
        [],
        [{"op": key[0], "input_dtypes": list(key[1]), "reason": reason} for key, reason in recorder.skipped.items()],
    )
    for key, samples in recorder.samples.items():
        if not samples:
            continue
        entry = {"op": key[0], "input_dtypes": list(key[1]), "calls": recorder.calls[key], "replayed": len(samples)}
        outputs = []
        try:
            for func, args, kwargs in samples:
                outputs.append(
                    [
                        _replay(func, args, kwargs, *where)
                        for where in ((cpu, torch.float32), (cpu, None), (device, None))
                    ]
                )
        except Exception as error:
            judged.append({**entry, "verdict": "FAIL", "reason": f"{type(error).__name__}: {first_line(error)}"})
            continue
        if any(output is None for triple in outputs for output in triple):
            skipped.append({"op": key[0], "input_dtypes": list(key[1]), "reason": "no tensor output to compare"})
            continue
        if not outputs[0][1].is_floating_point():  # integers and booleans: exactly the CPU's in the same dtypes
            same = all(triple[1].shape == triple[2].shape and torch.equal(triple[1], triple[2]) for triple in outputs)
            judged.append(
                {
                    **entry,
                    "verdict": "PASS" if same else "FAIL",
                    **({} if same else {"reason": "differs from the CPU's output in the same dtypes"}),
                }
            )
            continue
        try:
            reference, benchmark, target = (
                torch.cat([triple[i].flatten().double() for triple in outputs]) for i in range(3)
            )
            verdict = judge(errors(reference, target), errors(reference, benchmark), outputs[0][1].dtype)
            judged.append({**entry, **errors(reference, target).to_json(), **verdict})
        except ValueError as error:
            judged.append({**entry, "verdict": "FAIL", "reason": str(error)})
    judged.sort(key=lambda item: (ORDER[item["verdict"]], item.get("relative_ratio") or 0.0), reverse=True)
    sampled = sum(1 for item in judged if item["replayed"] < item["calls"])
    return {
        "device": str(device),
        "verdict": worst_verdict(item["verdict"] for item in judged),
        "ops_compared": len(judged),
        "ops_sampled": sampled,
        "samples_per_op": SAMPLES_PER_OP,
        "failed": [item for item in judged if item["verdict"] == "FAIL"],
        "worst": judged[:worst],
        "skipped": skipped,
    }


def has_kernel(func, dispatch_key: str) -> bool:
    """A kernel for the backend itself, or a composite one that decomposes into ops it has."""
    name = func.name()
    return any(
        torch._C._dispatch_has_kernel_for_dispatch_key(name, key)
        for key in (dispatch_key, "CompositeExplicitAutograd", "CompositeImplicitAutograd")
    )


def _op_name(func) -> str:
    return func._schema.name


def _dtypes(tree) -> tuple[str, ...]:
    leaves, _ = tree_flatten(tree)
    return tuple(str(leaf.dtype).removeprefix("torch.") for leaf in leaves if isinstance(leaf, torch.Tensor))


def _not_replayable(func, args, kwargs) -> str | None:
    """Why an op's calls cannot be replayed elsewhere (None: they can; in-place ops replay on copies)."""
    if any(word in _op_name(func) for word in _RANDOM):
        return "draws random numbers: no two devices draw the same"
    leaves, _ = tree_flatten((args, kwargs))
    if sum(leaf.numel() for leaf in leaves if isinstance(leaf, torch.Tensor)) > _SAMPLE_LIMIT:
        return f"inputs over {_SAMPLE_LIMIT} elements: not kept"
    return None


def _host_copy(value):
    return value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else value


def _as(device: torch.device, dtype: torch.dtype | None):
    """Move tensors to `device`; with a `dtype`, floating tensors and dtype arguments become it too."""

    def convert(value):
        if isinstance(value, torch.Tensor):
            floating = dtype is not None and value.is_floating_point()
            return value.to(device=device, dtype=dtype if floating else value.dtype, copy=True)  # in-place ops
        if isinstance(value, torch.device):
            return device
        if dtype is not None and isinstance(value, torch.dtype) and value.is_floating_point:
            return dtype
        return value

    return convert


def _replay(func, args, kwargs, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor | None:
    convert = _as(device, dtype)
    return _first_output(func(*tree_map(convert, args), **tree_map(convert, kwargs)))


def _first_float(output):
    leaves, _ = tree_flatten(output)
    return next(
        (leaf.float().cpu() for leaf in leaves if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()), None
    )


def _first_output(output) -> torch.Tensor | None:
    """An op's first tensor output on the host: complex as (real, imag) pairs, integers and booleans as they are."""
    leaves, _ = tree_flatten(output)
    tensor = next((leaf for leaf in leaves if isinstance(leaf, torch.Tensor)), None)
    if tensor is None:
        return None
    tensor = torch.view_as_real(tensor.resolve_conj()) if tensor.is_complex() else tensor
    return tensor.detach().cpu()


def run_ops(
    source: str,
    trace_device: torch.device,
    dtype: torch.dtype,
    target: str,
    replay_device: torch.device | None = None,
    progress=print,
) -> dict:
    """Trace on `trace_device`; judge coverage for `target`; replay on `replay_device` when given."""
    from voxport.models.registry import load_model

    progress(f"ops: tracing on {trace_device} in {str(dtype).removeprefix('torch.')}")
    recorder = trace_ops(load_model(source, trace_device, dtype))
    result = {
        "model": str(source),
        "traced_on": str(trace_device),
        "dtype": str(dtype).removeprefix("torch."),
        **coverage(recorder, target),
    }
    if replay_device is not None:
        kept = sum(len(samples) for samples in recorder.samples.values())
        progress(f"ops: replaying {kept} recorded calls of {len(recorder.samples)} ops on {replay_device}")
        result["replay"] = replay_accuracy(recorder, replay_device)
        result["verdict"] = result["replay"]["verdict"]  # the check's answer, where the CLI's exit code reads it
    return result


# Ops that only move or retype data: left out when lining up the op sequences of one block on three models
# (float32 skips the casts a half dtype makes).
_DATA_MOVES = {
    "aten::_to_copy",
    "aten::to",
    "aten::copy_",
    "aten::clone",
    "aten::detach",
    "aten::alias",
    "aten::lift_fresh",
    "aten::empty",
    "aten::empty_like",
    "aten::empty_strided",
    "aten::contiguous",
}


class OpTrace(TorchDispatchMode):
    """Every computing op of a call in order, with its first floating output (host, float32)."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, torch.Tensor | None]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        name = _op_name(func)
        if name not in _DATA_MOVES:
            self.ops.append((name, _first_float(result)))
        return result


def trace_block(model, name: str, call) -> list[tuple[str, torch.Tensor | None]]:
    from voxport.validate.capture import prepared_call

    module, args, kwargs = prepared_call(model, name, call)
    with torch.no_grad(), OpTrace() as trace:
        module(*args, **kwargs)
    return trace.ops


def first_diverging_op(block: str, call, sources: tuple[str, str], device: torch.device, dtype: torch.dtype) -> dict:
    """The first op of `block` (replayed on the reference's inputs of `call`) whose output parts from the CPU
    float32 reference by more than the benchmark's does, or where the target runs a different op."""
    from voxport.models.registry import load_model
    from voxport.validate.verdicts import errors, judge

    reference_source, target_source = sources
    traces = []
    for source, on, in_dtype in (
        (reference_source, torch.device("cpu"), torch.float32),
        (reference_source, torch.device("cpu"), dtype),
        (target_source, device, dtype),
    ):
        try:
            traces.append(trace_block(load_model(source, on, in_dtype), block, call))
        except Exception as error:
            return {"op": None, "reason": f"could not trace it: {type(error).__name__}: {error}"}
        finally:
            gc.collect()  # the model just traced is garbage (in reference cycles): one model in memory at a time
    reference, benchmark, target = traces
    for index, ((name, got), (bench_name, expected_bench)) in enumerate(zip(target, benchmark)):
        if name != bench_name:
            return {
                "index": index,
                "op": name,
                "reason": f"the target runs {name} where the benchmark runs {bench_name}",
            }
        if got is None or expected_bench is None:
            continue
        if got.shape != expected_bench.shape:  # a wrong shape is the answer, not an op to skip
            return {
                "index": index,
                "op": name,
                "verdict": "FAIL",
                "reason": f"output shape {tuple(got.shape)} where the benchmark's is {tuple(expected_bench.shape)}",
            }
        if index >= len(reference) or reference[index][0] != name:
            continue
        expected = reference[index][1]
        if expected is None or expected.shape != got.shape:
            continue
        verdict = judge(errors(expected, got), errors(expected, expected_bench), dtype)
        if verdict["verdict"] != "PASS":
            return {"index": index, "op": name, **verdict}
    if len(target) != len(benchmark):
        return {
            "index": min(len(target), len(benchmark)),
            "op": None,
            "reason": f"the target runs {len(target)} ops where the benchmark runs {len(benchmark)}",
        }
    return {"op": None, "reason": "every op keeps within the benchmark's error: check the weights"}
