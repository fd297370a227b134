"""voxport accuracy | repro | bench | ops | run-all: proving a port."""

from __future__ import annotations

import argparse
from pathlib import Path

from voxport.cli.common import (
    add_device_options,
    positive_float,
    positive_int,
    progress,
    progress_bar,
    quiet_library_progress,
)
from voxport.errors import InputError
from voxport.runtime.files import check_output_dir, check_output_path
from voxport.runtime.kinds import DEVICE_KINDS


def add_parsers(commands) -> None:
    from voxport.validate.grid import DEFAULT_CONFIGS

    def command(name, help_text, description, run, json_out=True):
        parser = commands.add_parser(name, help=help_text, description=description)
        parser.add_argument("--model", required=True, help="local checkpoint directory or hub id (CSM or Covo-Audio)")
        if json_out:
            parser.add_argument("--json-out", type=Path, help="also write the result as JSON")
        add_device_options(parser)
        parser.set_defaults(run=run)
        return parser

    accuracy = command(
        "accuracy",
        "judge a device/dtype block by block against the CPU float32 reference",
        "Record every stage that makes tokens or audio (CSM: backbone, depth decoder, the static-cache "
        "engine, Mimi; Covo: mel, encoder, adapter, LLM forward and cached two-round path, token2wav "
        "DiT and vocoder) and each block's inputs on the CPU in float32. Replay every block alone on "
        "--device/--dtype and, as the benchmark, on the CPU in the same dtype; judge each by its error "
        "relative to the benchmark's. Names the first block that is not PASS and the first op inside "
        "it that parts from the reference. Standard and limits: docs/validation.md. Exits 3 when the "
        "verdict is FAIL (0 for PASS and WARN).",
        _run_accuracy,
    )
    accuracy.add_argument("--reference-model", help="checkpoint for the reference and the benchmark (default: --model)")
    accuracy.add_argument(
        "--text",
        action="append",
        metavar="TEXT",
        help="an example text for text-to-speech models (repeatable; default: English, Chinese, long)",
    )
    accuracy.add_argument(
        "--audio",
        action="append",
        type=Path,
        metavar="FILE",
        help="an example speech file for speech-in models (repeatable; default: three synthetic turns)",
    )
    accuracy.add_argument(
        "--examples", help="comma-separated default examples to run (e.g. english,long; default: all)"
    )
    accuracy.add_argument(
        "--max-memory",
        type=positive_float,
        metavar="GB",
        help="bound this process's memory: passes on the CPU read their weights from the checkpoint as blocks "
        "run and hold as many blocks as fit (default: about 2 GB of blocks)",
    )
    accuracy.add_argument(
        "--no-op-search",
        action="store_true",
        help="do not look for the first diverging op inside the first failing block",
    )

    repro = command(
        "repro",
        "greedy and seeded generation twice, and against a reference device",
        "Greedy and seeded-sampling generation twice each on the device (token match rate, first "
        "divergence, identical audio), the step where its streams part from the reference device's "
        "(CPU float32 by default), and whether the reference's tokens stay in the target's top-k under "
        "teacher forcing, all through the engine that generates. Verdict FAIL when a repeat differs, a "
        "reference token leaves the top-k, or (both in float32) the teacher-forced logits or greedy "
        "streams part beyond a near tie; the command then exits 3.",
        _run_repro,
    )
    repro.add_argument("--reference-model", help="checkpoint of the reference streams (default: --model)")
    repro.add_argument("--reference-device", default="cpu", help="device of the reference streams (default: cpu)")
    repro.add_argument("--reference-dtype", default="float32", help="dtype of the reference streams (default: float32)")
    repro.add_argument("--steps", type=positive_int, default=16, help="generation steps (default: 16)")
    repro.add_argument("--top-k", type=positive_int, default=5, help="top-k for agreement (default: 5)")

    bench = command(
        "bench",
        "latency, real-time factor, throughput, memory and the bandwidth bound per configuration",
        "Fixed-length generation (end of audio ignored) per config: latency mean/p50/p90, RTF and its "
        "inverse, steps per second, time per step (N-step run minus 1-step run), peak device memory and "
        "process RSS, and the memory-bandwidth bound: weight bytes read per step / bandwidth, with "
        "bound_fraction = bound / measured (1.0 = as fast as memory allows). Also where the load time "
        "went (import, tokenizer, weights, first call...). Bandwidth: --bandwidth-gbs, else the "
        "published figure of a known accelerator, else a short probe on the device, cached per machine "
        "and taken again after the runs (the faster counts). "
        "See docs/performance.md.",
        _run_bench,
    )
    bench.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help=f"comma-separated short|medium|long_<steps>t (default: {DEFAULT_CONFIGS})",
    )
    bench.add_argument("--iterations", type=positive_int, default=3, help="timed runs per config (default: 3)")
    bench.add_argument(
        "--bandwidth-gbs",
        type=positive_float,
        help="device memory bandwidth in GB/s (default: published figure, else a cached probe)",
    )
    bench.add_argument(
        "--remeasure-bandwidth",
        action="store_true",
        help="probe the bandwidth now (and update the cache), even for a device in the table",
    )
    bench.add_argument(
        "--stages",
        action="store_true",
        help="also time each stage of the whole job (Covo: front end + encoder, prefill, decode, "
        "token2wav DiT and vocoder, first reply token and audio; CSM: first audio when "
        "streaming, codec decode)",
    )

    ops = command(
        "ops",
        "which aten ops the model uses and whether a device has them",
        "Trace every aten op (with dtypes) of one forward and a short generation on --device; report for "
        "--target whether each has a kernel (when that backend is installed) and which known gaps it hits, "
        "with the fix voxport applies. With --check-accuracy, exits 3 when the replay's verdict is FAIL.",
        _run_ops,
    )
    ops.add_argument(
        "--target", choices=DEVICE_KINDS, help="device kind to judge coverage for (default: the kind of --device)"
    )
    ops.add_argument(
        "--check-accuracy",
        action="store_true",
        help="replay each op on the target (which must be present) against CPU float32",
    )

    run_all = command(
        "run-all",
        "accuracy, repro, bench and ops, with a report",
        "Run accuracy, reproducibility, performance and ops; write accuracy.json, "
        "reproducibility.json, performance.json, ops.json, PNG plots and summary.md into --out.",
        _run_run_all,
        json_out=False,
    )
    run_all.add_argument("--out", type=Path, required=True, help="directory for the results")
    run_all.add_argument(
        "--configs", default="short_32t,medium_64t", help="benchmark configs (default: short_32t,medium_64t)"
    )
    run_all.add_argument("--iterations", type=positive_int, default=3, help="timed runs per config (default: 3)")
    run_all.add_argument("--steps", type=positive_int, default=16, help="reproducibility steps (default: 16)")
    run_all.add_argument(
        "--targets",
        metavar="KIND:DTYPE,...",
        help="validate several targets at once on Ray, e.g. cuda:bfloat16,npu:bfloat16: each "
        "target's accuracy, repro and bench as a task on a node with that device, the CPU "
        "float32 reference's bench once, one report side by side (--device/--dtype unused)",
    )
    run_all.add_argument(
        "--cluster", metavar="ADDRESS", help="with --targets: a running Ray cluster (default: a local Ray runtime)"
    )


def _validation_target(args: argparse.Namespace):
    """Device and dtype, after checking the model is one voxport can handle (a fast, clear failure)."""
    from voxport.models.registry import family_of
    from voxport.runtime.devices import resolve_device, resolve_dtype

    family_of(args.model)
    if getattr(args, "json_out", None) is not None:
        check_output_path(args.json_out)  # before the work, not after it
    device = resolve_device(args.device)
    quiet_library_progress()
    return device, resolve_dtype(args.dtype, device)


def _check_reference_model(args: argparse.Namespace) -> None:
    """A --reference-model voxport cannot handle fails before any work."""
    if args.reference_model:
        from voxport.models.registry import family_of

        family_of(args.reference_model)


FAILED_CHECK = 3  # the exit code of a check whose verdict is FAIL, so scripts and CI can stop on it


def _report(stage: str, result: dict, tables, json_out: Path | None) -> int:
    """Type, write and print a validator's result; exit FAILED_CHECK where its verdict is FAIL (WARN and PASS
    exit 0; ops has no verdict)."""
    from voxport.validate.reports import REPORTS, write_report

    report = REPORTS[stage].model_validate(result)
    if json_out is not None:
        write_report(json_out, report)
    print("\n".join(tables(report)))
    return FAILED_CHECK if getattr(report, "verdict", None) == "FAIL" else 0


def _run_accuracy(args: argparse.Namespace) -> int:
    from voxport.runtime.streaming import GB, Streaming
    from voxport.validate.accuracy import run_accuracy
    from voxport.validate.report import accuracy_tables

    _check_reference_model(args)
    device, dtype = _validation_target(args)
    for audio in args.audio or []:
        if not audio.is_file():
            raise InputError(f"--audio {audio} is not a file: expected a speech recording")
    result = run_accuracy(
        args.model,
        device,
        dtype,
        args.reference_model,
        texts=args.text,
        audios=[str(audio) for audio in args.audio or []] or None,
        locate_ops=not args.no_op_search,
        progress=progress,
        bar=progress_bar,
        example_names=[name.strip() for name in args.examples.split(",") if name.strip()] if args.examples else None,
        streaming=Streaming(None if args.max_memory is None else int(args.max_memory * GB)),
    )
    return _report("accuracy", result, accuracy_tables, args.json_out)


def _run_repro(args: argparse.Namespace) -> int:
    from voxport.runtime.devices import resolve_device, resolve_dtype
    from voxport.validate.report import reproducibility_table
    from voxport.validate.reproducibility import run_reproducibility

    _check_reference_model(args)
    device, dtype = _validation_target(args)
    reference_device = resolve_device(args.reference_device)
    reference_dtype = resolve_dtype(args.reference_dtype, reference_device)
    result = run_reproducibility(
        args.model,
        device,
        dtype,
        args.steps,
        args.top_k,
        reference_device,
        reference_dtype,
        progress=progress,
        reference_source=args.reference_model,
    )
    return _report("reproducibility", result, reproducibility_table, args.json_out)


def _run_bench(args: argparse.Namespace) -> int:
    from voxport.validate.grid import parse_configs
    from voxport.validate.performance import run_benchmark
    from voxport.validate.report import performance_table

    configs = parse_configs(args.configs)
    device, dtype = _validation_target(args)
    bandwidth = args.bandwidth_gbs * 1e9 if args.bandwidth_gbs else None
    result = run_benchmark(
        args.model,
        device,
        dtype,
        configs,
        args.iterations,
        bandwidth,
        progress=progress,
        remeasure_bandwidth=args.remeasure_bandwidth,
        stages=args.stages,
    )
    return _report("performance", result, performance_table, args.json_out)


def _run_ops(args: argparse.Namespace) -> int:
    import torch

    from voxport.runtime.devices import resolve_device
    from voxport.validate.ops import run_ops
    from voxport.validate.report import ops_table

    device, dtype = _validation_target(args)
    target = args.target or device.type
    if args.dtype == "auto" and target != "cpu":
        dtype = torch.bfloat16  # trace in the dtype the target would run
    replay = resolve_device(target) if args.check_accuracy else None
    result = run_ops(args.model, device, dtype, target, replay_device=replay, progress=progress)
    return _report("ops", result, ops_table, args.json_out)


def _run_run_all(args: argparse.Namespace) -> int:
    from voxport.validate.grid import parse_configs
    from voxport.validate.pipeline import run_all

    configs = parse_configs(args.configs)
    check_output_dir(args.out, "--out")
    if args.targets or args.cluster:
        return _run_fleet(args, configs)
    device, dtype = _validation_target(args)
    summary = run_all(args.model, device, dtype, args.out, configs, args.iterations, args.steps, progress=progress)
    print(f"wrote {summary} (with accuracy.json, reproducibility.json, performance.json, ops.json and plots)")
    return 0


def _run_fleet(args: argparse.Namespace, configs) -> int:
    from voxport.batch.fleet import parse_targets, run_fleet
    from voxport.models.registry import family_of

    if not args.targets:
        raise InputError("--cluster validates a fleet: give --targets too, e.g. --targets cuda:bfloat16")
    targets = parse_targets(args.targets)
    family_of(args.model)
    summary = run_fleet(
        args.model, targets, args.out, configs, args.iterations, args.steps, args.cluster, progress=progress
    )
    print(f"wrote {summary} (with fleet.json and plots) for {', '.join(map(str, targets))}")
    return 0
