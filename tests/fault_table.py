"""The detection table: every planted fault (tests/faults.py) x dtype -> verdict and named block; with --clean,
the correct ports (a clean copy, other attention kernels) over several seeds -> their largest ratios.

    PYTHONPATH=src python tests/fault_table.py [--dtypes bfloat16,float16] [--family csm|covo] [--only SUBSTRING]
    PYTHONPATH=src python tests/fault_table.py --clean --seeds 0,1,2
    PYTHONPATH=src python tests/fault_table.py --size full --layers 4 --family csm --examples english  # real widths
    PYTHONPATH=src python tests/fault_table.py --family covo --checkpoint FULL_COVO --only x1.01,softmax --in-code
Writes the checkpoints (tiny, or --size full) into a temporary directory; records the clean reference and its
benchmark once per family, dtype (and seed) and judges every target against them; prints one Markdown row per
run as it finishes, with the peak RSS of the target's pass (and of the shared reference and benchmark).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from faults import CLEAN_VARIANTS, FAULTS, run_fault
from voxport.models.tiny import make_tiny_covo, make_tiny_csm, write_tiny_checkpoint
from voxport.validate.accuracy import Baseline, record_baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtypes", default="bfloat16,float16")
    parser.add_argument("--family", choices=["csm", "covo"])
    parser.add_argument("--only", default="", help="comma-separated substrings of the fault names to run")
    parser.add_argument("--in-code", action="store_true", help="only the faults planted in code")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny checkpoints")
    parser.add_argument("--clean", action="store_true", help="run the correct ports instead of the faults")
    parser.add_argument("--seeds", default="0,1,2", help="checkpoint seeds for --clean")
    parser.add_argument("--examples", help="default examples to run, e.g. english (default: all)")
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny", help="checkpoint size (make-tiny's)")
    parser.add_argument("--layers", type=int, help="with --size full: language-model layers (make-tiny's)")
    parser.add_argument("--checkpoint", type=Path, help="with --family: its clean checkpoint, used as it is")
    parser.add_argument(
        "--no-op-search", action="store_true", help="skip the first-diverging-op search (it loads whole models)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="voxport-faults-") as folder:  # full-size copies are GBs each
        run_table(Path(folder), args)


def run_table(root: Path, args) -> None:
    if args.clean:
        return clean_table(root, args)
    clean = checkpoints(root, args, args.seed)
    print(
        "| fault | family | dtype | expected block | verdict | named block | first op | ratio | seconds | "
        "peak RSS GiB per phase |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    baselines = Baselines(clean, args)
    for dtype_name in args.dtypes.split(","):
        for index, fault in enumerate(FAULTS):
            wanted = (not args.family or fault.family == args.family) and any(
                part in fault.name for part in args.only.split(",")
            )
            if not wanted or (args.in_code and not fault.in_code):
                continue
            started = time.perf_counter()
            workdir = root / f"run{index}-{dtype_name}"
            workdir.mkdir()
            result = run_fault(
                fault,
                clean[fault.family],
                workdir,
                getattr(torch, dtype_name),
                baseline=baselines.get(fault.family, dtype_name),
                locate_ops=not args.no_op_search,
            )
            shutil.rmtree(workdir)
            named = result["first_drift_module"]
            # the named block's numbers; where none is named, the expected block's (how far the fault stayed in)
            block = next((b for b in result["blocks"] if b["module"] == (named or fault.block)), {})
            op = result["first_diverging_op"] or {}
            ratio = block.get("relative_ratio")
            print(
                f"| {fault.name} | {fault.family} | {dtype_name} | {fault.block} | {result['verdict']} | {named} "
                f"{'(right)' if named == fault.block else '(WRONG)'} | {op.get('op') or ''} | "
                f"{'' if ratio is None else f'{ratio:.2f}'} {block.get('reason', '')} | "
                f"{time.perf_counter() - started:.0f} | {_peak(result)} |",
                flush=True,
            )


def clean_table(root: Path, args) -> None:
    print("| port | family | seed | dtype | verdict | named block | largest relative ratio | largest max ratio |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for seed in (int(value) for value in args.seeds.split(",")):
        clean = checkpoints(root / f"seed{seed}", args, seed)
        baselines = Baselines(clean, args)
        for dtype_name in args.dtypes.split(","):
            for variant in CLEAN_VARIANTS:
                if args.family and variant.family != args.family:
                    continue
                workdir = root / f"clean{seed}-{variant.name}-{variant.family}-{dtype_name}".replace(" ", "_")
                workdir.mkdir()
                result = run_fault(
                    variant,
                    clean[variant.family],
                    workdir,
                    getattr(torch, dtype_name),
                    baseline=baselines.get(variant.family, dtype_name),
                )
                shutil.rmtree(workdir)
                judged = [*result["blocks"], *result["outputs"].values()]
                relative = max(entry.get("relative_ratio") or 0.0 for entry in judged)
                largest = max(entry.get("max_ratio") or 0.0 for entry in judged)
                print(
                    f"| {variant.name} | {variant.family} | {seed} | {dtype_name} | {result['verdict']} | "
                    f"{result['first_drift_module']} | {relative:.3f} | {largest:.3f} |",
                    flush=True,
                )


class Baselines:
    """The clean checkpoints' reference and benchmark per family and dtype, recorded on first use and kept (one
    dtype's at a time): every target is judged against the same recording."""

    def __init__(self, clean: dict[str, Path], args):
        self.clean, self.args, self.kept = clean, args, {}

    def get(self, family: str, dtype_name: str) -> Baseline:
        if (family, dtype_name) not in self.kept:
            self.kept = {key: value for key, value in self.kept.items() if key[1] == dtype_name}
            self.kept[family, dtype_name] = record_baseline(
                str(self.clean[family]),
                getattr(torch, dtype_name),
                example_names=self.args.examples.split(",") if self.args.examples else None,
                progress=lambda message: None,
            )
        return self.kept[family, dtype_name]


def checkpoints(root: Path, args, seed: int) -> dict[str, Path]:
    """A clean checkpoint of each family asked for (only --family's where given), at --size; --checkpoint's."""
    if args.checkpoint:
        if not args.family:
            sys.exit("--checkpoint needs --family")
        return {args.family: args.checkpoint}
    size = {"size": args.size, **({"layers": args.layers} if args.layers else {})}
    builds = {"csm": make_tiny_csm, "covo": make_tiny_covo}
    return {
        family: write_tiny_checkpoint(build, root / family, seed=seed, **size)
        for family, build in builds.items()
        if not args.family or family == args.family
    }


def _peak(result: dict) -> str:
    return " / ".join(f"{name} {entry['peak_rss_bytes'] / 2**30:.1f}" for name, entry in result["phases"].items())


if __name__ == "__main__":
    main()
