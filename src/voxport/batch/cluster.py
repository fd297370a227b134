"""The Ray runtime a batch job runs on: an embedded local one (started and stopped here) or a running cluster.

The embedded runtime is kept light (no dashboard, a small object store, worker logs not echoed), so the same
command runs on a laptop, a CI box or a GPU node; `--cluster ADDRESS` joins a cluster someone already runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from voxport.errors import InputError, VoxportError, first_line
from voxport.runtime.devices import BACKENDS
from voxport.runtime.kinds import DEVICE_KINDS

OBJECT_STORE_BYTES = 128 * 2**20  # rows and results are small: file paths and numbers, never audio
WORKER_START_SECONDS = 3600  # time for every worker to load its model (a cold hub download included)


def require_ray() -> ModuleType:
    """Ray itself, or one line saying how to install it."""
    try:
        import pyarrow  # noqa: F401  (inputs and the manifest)
        import ray
        import ray.data
    except ImportError:
        raise VoxportError("Ray is not installed: pip install 'voxport[batch]' (or 'ray[data]>=2.40')") from None
    return ray


@contextmanager
def ray_runtime(cluster: str | None, cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray connected to `cluster`, or a local runtime for the duration of the block. A runtime this process
    has already joined (a Python caller's, a test session's) is used as it is and left running."""
    ray = require_ray()
    if ray.is_initialized():
        _quiet_ray_data(ray)
        yield ray
        return
    start(cluster, cpus)
    try:
        _quiet_ray_data(ray)
        yield ray
    finally:
        ray.shutdown()


def start(cluster: str | None = None, cpus: int | None = None) -> None:
    """Join `cluster`, or start a light local runtime with at least `cpus` CPUs (default: this machine's)."""
    ray = require_ray()
    settings = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if cluster:
            ray.init(address=cluster, **settings)
        else:
            ray.init(num_cpus=max(cpus or 0, os.cpu_count() or 1), object_store_memory=OBJECT_STORE_BYTES, **settings)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"cluster {cluster}" if cluster else "a local Ray runtime"
        raise VoxportError(f"cannot start or reach {where}: {first_line(error)}{_auth_hint(cluster)}") from None


def _auth_hint(cluster: str | None) -> str:
    """Ray refuses a client that does not send the token of a cluster started with token authentication (which
    `ray start` turns on where ~/.ray/auth_token exists), and its error says only that it could not connect."""
    if not cluster or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return (
        "; if the cluster uses token authentication, set RAY_AUTH_MODE=token here too "
        "(the token from ~/.ray/auth_token or RAY_AUTH_TOKEN)"
    )


def _quiet_ray_data(ray) -> None:
    """voxport draws its own progress over rows; Ray Data's bars and execution logs would interleave with it."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    context.wait_for_min_actors_s = WORKER_START_SECONDS  # rows go out once every worker holds its model
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # a failure reaches the user as voxport's one line


def device_kind(spec: str, ray=None) -> str:
    """The device kind workers run on: `spec` itself, or for auto the best one the runtime offers."""
    spec = spec.strip().lower()
    if spec != "auto":
        if spec not in DEVICE_KINDS:
            raise InputError(
                f"unknown device '{spec}': expected auto or one of {', '.join(DEVICE_KINDS)} "
                "(workers take one device each)"
            )
        return spec
    resources = ray.cluster_resources() if ray is not None else {}
    for kind, backend in BACKENDS.items():
        if backend.cluster_resource and resources.get(backend.cluster_resource, 0) >= 1:
            return kind
    return "cpu"


def device_request(kind: str) -> dict:
    """Ray's request for one device of `kind`: num_gpus for GPUs, a custom resource (e.g. NPU) otherwise."""
    resource = BACKENDS[kind].cluster_resource
    if resource is None:
        return {"num_cpus": 1}
    if resource == "GPU":
        return {"num_gpus": 1}
    return {"resources": {resource: 1}}


def devices_offered(ray, kind: str) -> int:
    """How many workers of `kind` the runtime can hold at once."""
    resource = BACKENDS[kind].cluster_resource or "CPU"
    return int(ray.cluster_resources().get(resource, 0))


def check_workers(ray, kind: str, workers: int) -> None:
    """Fail at once, rather than wait forever, when the runtime cannot hold every worker."""
    offered = devices_offered(ray, kind)
    if workers > offered:
        resource = BACKENDS[kind].cluster_resource or "CPU"
        raise InputError(
            f"--workers {workers} on {kind} needs {workers} {resource} but the Ray runtime has "
            f"{offered}: lower --workers or add nodes"
        )


def model_for_workers(source: str | os.PathLike) -> str:
    """A local checkpoint as an absolute path (workers do not share the caller's working directory); a hub
    id as it is."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)
