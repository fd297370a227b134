"""The validation reports as typed objects: what `accuracy`, `repro`, `bench`, `ops` and `run-all` write as JSON
and render as Markdown, with the keys scripts read (`verdict`, `first_drift_module`, `bound_fraction`, ...).

A validator's result is checked into its model here (`REPORTS[stage].model_validate(result)`); every model
keeps keys it does not declare (a validator may add measurements), and `write_report` writes exactly the keys
the result had, declared ones in their order first. The JSON Schemas in docs/schemas/ are these models'
(`python -m voxport.cli.schemas` writes them; tests/test_reports.py checks they are current).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voxport.runtime.files import replaced_atomically

Verdict = Literal["PASS", "WARN", "FAIL"]


class Record(BaseModel):
    """A part of a report: declared keys typed, any other key a validator adds kept as it is."""

    model_config = ConfigDict(extra="allow")


class Environment(Record):
    """What a result was measured on (validate.environment)."""

    voxport: str
    torch: str
    transformers: str
    python: str
    platform: str
    device: str
    device_name: str
    driver: str | None
    visible_devices: str | None


ENVIRONMENT = "what the result was measured on: run-all's files and the fleet's targets only"


def write_report(path: Path, report: BaseModel) -> Path:
    """`report` as indented JSON at `path`, atomically: the keys it was given, none of the defaults it was not."""
    with replaced_atomically(path) as temporary:
        temporary.write_text(report_json(report, indent=2))
    return path


def report_json(report: BaseModel, indent: int | None = None) -> str:
    """The JSON text of a report (non-finite numbers as JSON's Infinity and NaN, as Python's json writes them)."""
    return json.dumps(report.model_dump(exclude_unset=True), indent=indent, ensure_ascii=False)


class StageError(BaseModel):
    """A run-all stage that did not complete: why, in one line."""

    model_config = ConfigDict(extra="forbid")

    error: str = Field(description="the exception's type and first line")
    environment: Environment | None = Field(default=None, description=ENVIRONMENT)


# accuracy


class Placement(Record):
    model: str
    device: str
    dtype: str


class AccuracyLimits(Record):
    relative_ratio: list[float] = Field(description="[PASS limit, WARN limit] of the relative-error ratio")
    max_ratio: list[float] = Field(description="[PASS limit, WARN limit] of the max-relative-error ratio")


class Judged(Record):
    """A comparison's verdict, and the ratios to the benchmark's error that gave it."""

    verdict: Verdict
    reason: str | None = Field(default=None, description="why it is not PASS, where a number alone does not say")
    relative_ratio: float | None = Field(default=None, description="relative error / the benchmark's")
    max_ratio: float | None = Field(default=None, description="max relative error / the benchmark's")


class ExampleVerdict(Record):
    verdict: Verdict
    first_drift_module: str | None = Field(description="the example's first block that is not PASS")


class BlockResult(Judged):
    """One block or stage over every example: the worst example's numbers and verdict."""

    module: str = Field(description="checkpoint key prefix of a module block, or the stage's name")
    stage: str
    kind: Literal["module", "stage"]
    calls: int = Field(description="calls of the block in the reference run")
    replayed: int = Field(description="calls replayed (at most 12, spread evenly)")
    relative_error: float | None = None
    max_relative_error: float | None = None
    benchmark_relative_error: float | None = None
    benchmark_max_relative_error: float | None = None
    path: str | None = Field(default=None, description="module path inside the model (module blocks)")
    example: str = Field(description="the example whose numbers these are")


class OutputResult(Judged):
    """A teacher-forced output of the whole model: drift accumulated through every block (validate.metrics)."""

    cosine: float | None = None
    max_abs: float | None = None
    mean_abs: float | None = None
    relative_error: float | None = None
    within_0_1_percent: float | None = None
    top1_agreement: float | None = None


class DivergingOp(Record):
    """The first op inside the first drifting block that parts from the reference."""

    block: str
    index: int | None = Field(default=None, description="position among the block's computing ops")
    op: str | None = Field(description="aten op name; null where no op could be named")
    verdict: Verdict | None = None
    reason: str | None = None
    relative_ratio: float | None = None
    max_ratio: float | None = None


class AccuracyReport(Record):
    """`voxport accuracy --json-out`, run-all's accuracy.json (docs/validation.md)."""

    model: str
    reference: Placement
    benchmark: Placement
    target: Placement
    limits: AccuracyLimits
    examples: dict[str, ExampleVerdict]
    blocks: list[BlockResult] = Field(description="every block and stage in execution order")
    outputs: dict[str, OutputResult] = Field(description="keyed EXAMPLE/OUTPUT")
    first_drift_module: str | None = Field(description="the first block in execution order that is not PASS")
    first_diverging_op: DivergingOp | None
    verdict: Verdict = Field(description="the worst of every block and output; the command exits 3 on FAIL")
    seconds: float
    environment: Environment | None = Field(default=None, description=ENVIRONMENT)


# reproducibility


class Repeat(Record):
    token_match_rate: float = Field(description="steps equal in two greedy runs")
    first_divergence: int | None
    sampled_token_match_rate: float = Field(description="steps equal in two runs sampled from the same seed")
    sampled_first_divergence: int | None
    identical_audio: bool | None = Field(description="null for models whose tokens are not audio")


class AgainstReference(Record):
    device: str
    dtype: str
    top_k: int
    token_match_rate: float
    greedy_parts_at_step: int | None
    sampled_parts_at_step: int | None
    agree_until_step: int | None = Field(description="null: the reference's tokens stayed in the target's top-k")
    steps_in_top_k: int
    logits_gap: float = Field(
        description="largest difference of the engine's teacher-forced logits from the "
        "reference's, over the largest logit"
    )


class ReproReport(Record):
    """`voxport repro --json-out`, run-all's reproducibility.json."""

    model: str
    device: str
    dtype: str
    steps: int
    step_unit: str
    seed: int
    repeat: Repeat
    against_reference: AgainstReference
    problems: list[str]
    verdict: Verdict = Field(description="FAIL when a repeat differs or a reference token leaves the top-k")
    environment: Environment | None = Field(default=None, description=ENVIRONMENT)


# performance


class ConfigResult(Record):
    config: str
    steps: int
    latency_mean_seconds: float
    latency_p50_seconds: float
    latency_p90_seconds: float
    steps_per_second: float
    step_seconds: float | None = Field(description="(N-step run - 1-step run) / (N - 1); null where noise swamps it")
    audio_seconds: float | None
    rtf: float | None = Field(description="compute seconds / audio seconds")
    real_time_multiple: float | None
    peak_allocated_bytes: int | None = Field(description="null on the CPU (no device allocator)")
    peak_reserved_bytes: int | None
    peak_process_rss_bytes: int
    bytes_read_per_step: int
    bound_step_seconds: float | None = Field(description="bytes read per step / memory bandwidth")
    bound_fraction: float | None = Field(description="bound seconds / measured seconds: 1.0 is memory-bound speed")


class PerformanceReport(Record):
    """`voxport bench --json-out`, run-all's performance.json (docs/performance.md)."""

    model: str
    device: str
    device_name: str
    dtype: str
    step_unit: str
    iterations: int
    load_breakdown_seconds: dict[str, float]
    total_load_seconds: float
    weight_bytes_per_step: int
    bandwidth_bytes_per_second: float | None
    bandwidth_source: str | None = Field(description="given, published, probe or cached probe")
    bandwidth_probes_bytes_per_second: list[float]
    stages: dict[str, float | None] | None = Field(description="--stages: seconds (and counts) of each stage")
    configs: list[ConfigResult]
    environment: Environment | None = Field(default=None, description=ENVIRONMENT)


# ops


class GapFix(Record):
    problem: str
    fix: str


class OpUse(Record):
    op: str
    input_dtypes: list[str]
    output_dtypes: list[str]
    calls: int
    kernel: bool | None = Field(description="null where the target's backend is not installed")
    known_gaps: list[GapFix]


class KnownGapEntry(Record):
    ops: list[str]
    when: str
    problem: str
    fix: str


class OpVerdict(Judged):
    op: str
    input_dtypes: list[str]
    calls: int
    replayed: int
    relative_error: float | None = None
    max_relative_error: float | None = None


class SkippedOp(Record):
    op: str
    input_dtypes: list[str]
    reason: str


class OpReplay(Record):
    device: str
    verdict: Verdict
    ops_compared: int
    ops_sampled: int
    samples_per_op: int
    failed: list[OpVerdict]
    worst: list[OpVerdict]
    skipped: list[SkippedOp]


class OpsReport(Record):
    """`voxport ops --json-out`, run-all's ops.json."""

    model: str
    traced_on: str
    dtype: str
    target: str
    backend_installed: bool
    distinct_ops: int
    ops: list[OpUse]
    missing_kernels: list[str]
    gaps_hit: list[str]
    known_gaps: list[KnownGapEntry]
    replay: OpReplay | None = Field(default=None, description="--check-accuracy: each op replayed on the target")
    environment: Environment | None = Field(default=None, description=ENVIRONMENT)


REPORTS: dict[str, type[BaseModel]] = {
    "accuracy": AccuracyReport,
    "reproducibility": ReproReport,
    "performance": PerformanceReport,
    "ops": OpsReport,
}


# run-all and the fleet


class ValidationRun(Record):
    """run-all's stages on one model and device (each file of them is its report with the environment)."""

    model: str
    dtype: str
    accuracy: AccuracyReport | StageError | None = None
    reproducibility: ReproReport | StageError | None = None
    performance: PerformanceReport | StageError | None = None
    ops: OpsReport | StageError | None = None


class FleetTarget(Record):
    """One target of `run-all --targets`, validated as a Ray task on its node."""

    node: str
    error: str | None = Field(default=None, description="why the target did not run at all")
    environment: Environment | None = None
    model: str | None = None
    dtype: str | None = None
    accuracy: AccuracyReport | StageError | None = None
    reproducibility: ReproReport | StageError | None = None
    performance: PerformanceReport | StageError | None = None


class FleetReport(Record):
    """fleet.json of `voxport run-all --targets`."""

    model: str
    reference: FleetTarget = Field(description="the CPU float32 reference's performance")
    targets: dict[str, FleetTarget] = Field(description="keyed KIND:DTYPE, in the order given")
