"""run-all across a fleet: each target (device kind and dtype) validated as a Ray task on a node that has that
device, the CPU float32 reference's benchmark once, and one report comparing the targets side by side."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

from voxport.batch.cluster import device_request, devices_offered, model_for_workers, ray_runtime
from voxport.errors import InputError, VoxportError
from voxport.runtime.files import check_output_dir
from voxport.runtime.kinds import DEVICE_KINDS
from voxport.validate.reports import Environment, FleetTarget

TARGET_STAGES = ("accuracy", "reproducibility", "performance")
_TARGET = re.compile(rf"^({'|'.join(DEVICE_KINDS)}):(float32|bfloat16|float16)$")


@dataclass(frozen=True)
class Target:
    kind: str
    dtype: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.dtype}"


def parse_targets(text: str) -> list[Target]:
    """'cuda:bfloat16,npu:bfloat16' -> targets, in order, each once."""
    targets = []
    for name in (part.strip().lower() for part in text.split(",") if part.strip()):
        match = _TARGET.match(name)
        if not match:
            raise InputError(
                f"unknown target '{name}': expected KIND:DTYPE such as cuda:bfloat16 "
                f"(kinds {', '.join(DEVICE_KINDS)}; dtypes float32, bfloat16, float16)"
            )
        if Target(match[1], match[2]) not in targets:
            targets.append(Target(match[1], match[2]))
    if not targets:
        raise InputError("no targets given: expected e.g. --targets cuda:bfloat16,npu:bfloat16")
    return targets


def run_fleet(
    source: str,
    targets: list[Target],
    out: Path,
    configs,
    iterations: int = 3,
    steps: int = 16,
    cluster: str | None = None,
    progress=print,
) -> Path:
    """Validate every target on its own node and write fleet.json, summary.md and plots into `out`."""
    from voxport.batch.fleet_report import write_fleet_report

    check_output_dir(out, "--out")
    with ray_runtime(cluster, cpus=len(targets) + 1) as ray:
        for kind in {target.kind for target in targets}:
            if devices_offered(ray, kind) < 1:
                raise InputError(f"target {kind} has no device in the Ray runtime: expected a node with one")
        check, source = ray.remote(validate_target), model_for_workers(source)
        reference = check.options(num_cpus=1).remote(
            source, "cpu", "float32", configs, iterations, steps, ("performance",)
        )
        pending = {
            check.options(**device_request(target.kind)).remote(
                source, target.kind, target.dtype, configs, iterations, steps, TARGET_STAGES
            ): str(target)
            for target in targets
        }
        pending[reference] = "reference"
        progress(f"fleet: {len(targets)} targets and the CPU float32 reference as Ray tasks")
        results = {}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(done)
            results[name] = ray.get(done)
            progress(f"fleet: {name} done on {results[name].node}")
    return write_fleet_report(
        out, source, results.pop("reference"), {str(target): results[str(target)] for target in targets}
    )


def validate_target(
    source: str, kind: str, dtype: str, configs, iterations: int, steps: int, stages: tuple[str, ...]
) -> FleetTarget:
    """One target's stages on the device Ray granted this task (it runs on that device's node)."""
    from voxport.runtime.devices import resolve_device, resolve_dtype
    from voxport.validate.environment import environment
    from voxport.validate.pipeline import run_stages

    try:
        device = resolve_device(kind)
        torch_dtype = resolve_dtype(dtype, device)
    except VoxportError as error:
        return FleetTarget(node=socket.gethostname(), error=str(error))
    results = run_stages(
        source, device, torch_dtype, configs, iterations, steps, names=stages, progress=lambda message: None
    )
    return FleetTarget(
        node=socket.gethostname(),
        environment=Environment.model_validate(environment(device)),
        **{name: getattr(results, name) for name in results.model_fields_set},
    )
