"""The detection table: every planted fault (tests/faults.py) x dtype -> verdict and named block.

    PYTHONPATH=src python tests/fault_table.py [--dtypes bfloat16,float16] [--family csm|covo] [--only SUBSTRING]
Writes tiny checkpoints into a temporary directory; prints one Markdown row per run as it finishes.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from faults import FAULTS, run_fault  # noqa: E402

from voxport.models.tiny import make_tiny_covo, make_tiny_csm, write_tiny_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtypes", default="bfloat16,float16")
    parser.add_argument("--family", choices=["csm", "covo"])
    parser.add_argument("--only", default="")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny checkpoints")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="voxport-faults-"))
    clean = {"csm": write_tiny_checkpoint(make_tiny_csm, root / "csm", seed=args.seed),
             "covo": write_tiny_checkpoint(make_tiny_covo, root / "covo", seed=args.seed)}
    print("| fault | family | dtype | expected block | verdict | named block | first op | ratio | seconds |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for index, fault in enumerate(FAULTS):
        if (args.family and fault.family != args.family) or args.only not in fault.name:
            continue
        for dtype_name in args.dtypes.split(","):
            started = time.perf_counter()
            workdir = root / f"run{index}-{dtype_name}"
            workdir.mkdir()
            result = run_fault(fault, clean[fault.family], workdir, getattr(torch, dtype_name))
            named = result["first_drift_module"]
            block = next((b for b in result["blocks"] if b["module"] == named), {})
            op = result["first_diverging_op"] or {}
            ratio = block.get("relative_ratio")
            print(f"| {fault.name} | {fault.family} | {dtype_name} | {fault.block} | {result['verdict']} | {named} "
                  f"{'(right)' if named == fault.block else '(WRONG)'} | {op.get('op') or ''} | "
                  f"{'' if ratio is None else f'{ratio:.1f}'} {block.get('reason', '')} | "
                  f"{time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
