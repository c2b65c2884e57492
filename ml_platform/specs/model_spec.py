"""`ModelSpec`: everything that differs between models, declared once in YAML."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
import os
import zoneinfo
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SPEC_DIR = Path(__file__).parent
SPEC_DIR_ENV = "ML_PLATFORM_SPEC_DIR"

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

#: The metrics each task's evaluation produces (`ml.metrics.metrics_for`; `auc` only when the
#: test split holds both classes), plus `MODEL_METRICS` measured on every model
#: (`tracking.scoring`). Gates and `primary_metric` may name only these; a test keeps this
#: table equal to what the code computes.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("mae", "rmse", "r2"),
    "ranking": ("ndcg_at_10", "precision_at_10", "auc"),
}
MODEL_METRICS: tuple[str, ...] = ("size_mb",)


def metrics_of(task: str) -> tuple[str, ...]:
    """Every metric a candidate of `task` is evaluated on."""
    return (*TASK_METRICS[task], *MODEL_METRICS)


class SpecFieldError(ValueError):
    """A spec value at fault, with the dotted path of its field below the validated model
    (e.g. `promotion.gates.0.metric`, pydantic's notation), so the one-line error names the field exactly."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FreshnessWindow(_Frozen):
    """How old the newest materialization may get: warn after `warn_hours`, fail after
    `fail_hours` (evaluated by the Dagster daemon, shown in the UI)."""

    warn_hours: float = Field(gt=0)
    fail_hours: float = Field(ge=1 / 60, description="at least a minute (Dagster's limit)")


# Minute, hour, day of month, month, day of week (0 or 7: Sunday): each field's value range.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))


def check_cron(expression: str) -> None:
    """Raise ValueError naming the field at fault unless `expression` is a five-field cron
    expression of numbers, `*`, ranges `a-b`, steps `/n` and lists `a,b` (no names, no `@daily`:
    what every scheduler, Dagster's included, reads the same way)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expression!r} needs 5 fields (minute hour day month weekday), "
                         f"got {len(fields)}")
    for text, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            span, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ValueError(f"cron {expression!r}: bad step {step!r} in the {name} field")
            if span == "*":
                continue
            first, _, last = span.partition("-")
            values = [first, last] if last else [first]
            if not all(x.isdigit() and low <= int(x) <= high for x in values):
                raise ValueError(f"cron {expression!r}: {span!r} is not in {low}-{high} "
                                 f"in the {name} field")
            if last and int(first) > int(last):
                raise ValueError(f"cron {expression!r}: empty range {span!r} in the {name} field")


class ColumnSpec(_Frozen):
    """One landed column: its dtype, whether nulls are allowed and its value range."""

    dtype: Literal["string", "int64", "float64", "bool", "date"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None


class DatasetSpec(_Frozen):
    """A landed dataset: one file per day, validated against `columns`."""

    name: str
    start_date: dt.date = Field(
        description="the first day of the dataset's daily partitions (YYYY-MM-DD): files dated "
                    "earlier are ignored with that reason; the last partition is tomorrow (UTC)")
    generator: str = Field(description="name of the synthetic generator in ml_platform.simulation.generators")
    key: str = Field(description="column whose values must be unique within a day")
    date_column: str
    columns: dict[str, ColumnSpec]
    rows_per_day: int = Field(gt=0, description="rows the generator lands per day")
    min_completeness: float = Field(
        0.9, gt=0, le=1, description="landed/expected rows below this fail the completeness check"
    )
    freshness: FreshnessWindow = FreshnessWindow(warn_hours=26, fail_hours=50)
    sensor_interval_seconds: int = Field(30, ge=1, description="landing sensor tick interval")
    debounce_seconds: float = Field(
        60, ge=0, description="the landing sensor waits this long after the last new file of a "
                              "burst, then requests one run for the whole burst")
    retry_max_hours: float = Field(
        24, gt=0, description="a day whose run failed is taken up again by the landing sensor "
                              "after 1, 2, 4, ... minutes, at most this many hours apart")
    require_previous_day_complete: bool = Field(
        False, description="training waits until the day before the newest landed day has "
                           "passed validation (completeness included)")
    max_rows_factor: float = Field(
        5.0, gt=1, description="a day with more than this many times its expected rows fails "
                               "the (blocking) completeness check: a volume bound")
    raw_versions_kept: int | None = Field(
        None, ge=1, description="retention of landed files in the lake: keep the newest N "
                                "versions of each day (a version a registered model was trained "
                                "on is never removed); None: keep every version")
    date_timezone: str | None = Field(
        None, description="unset: timezone-aware timestamps in `date_column` fail the schema "
                          "check. Set (e.g. `UTC`, `Europe/Paris`): they are read as the "
                          "calendar date in that timezone before validation")
    schedule_cron: str | None = Field(
        None, description="when the dataset's scheduled retrain runs: a five-field cron "
                          "expression in UTC (e.g. '0 2 * * *', daily at 02:00); None: the "
                          "platform's daily fallback")

    @field_validator("schedule_cron")
    @classmethod
    def _valid_cron(cls, v: str | None) -> str | None:
        if v is not None:
            check_cron(v)
        return v

    @field_validator("columns")
    @classmethod
    def _non_empty(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        if not v:
            raise ValueError("a dataset needs at least one column")
        return v

    @field_validator("date_timezone")
    @classmethod
    def _known_timezone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                zoneinfo.ZoneInfo(v)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown timezone {v!r} (an IANA name such as 'UTC' or "
                                 "'Europe/Paris')") from exc
        return v

    @model_validator(mode="after")
    def _columns_declared(self) -> DatasetSpec:
        for field_name in ("key", "date_column"):
            column = getattr(self, field_name)
            if column not in self.columns:
                raise SpecFieldError(field_name, f"column {column!r} is not a declared column; "
                                                 f"declared: {sorted(self.columns)}")
        if self.columns[self.date_column].dtype != "date":
            raise SpecFieldError("date_column", f"column {self.date_column!r} is declared "
                                                f"{self.columns[self.date_column].dtype!r}, not 'date'")
        return self


class TrainingSpec(_Frozen):
    """Model family and hyper-parameters; `task` picks the model and metrics in `ml/`."""

    task: Literal["regression", "ranking"]
    feature_builder: str
    target: str
    group_column: str | None = Field(
        None, description="ranking: the column that, with the dataset's date column, names one "
                          "query (a user's feed of a day); the feature builder keeps it")
    window_days: int | None = Field(
        None, ge=1, description="train on the N calendar days that end with the newest "
                                "validated day (a rejected day leaves a gap); None: every "
                                "validated day")
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    valid_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    shuffle_labels: bool = Field(False, description="destroys the signal: for weak-model drills")

    @model_validator(mode="after")
    def _ranking_needs_groups(self) -> TrainingSpec:
        if (self.task == "ranking") != (self.group_column is not None):
            raise ValueError("group_column is required for task 'ranking' and only for it")
        return self


class Gate(_Frozen):
    """`metric op threshold`, e.g. `mae < 12`."""

    metric: str
    op: Literal["<", "<=", ">", ">="]
    threshold: float

    def passes(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


class PromotionSpec(_Frozen):
    """Gates a candidate must pass before `production` moves to it."""

    gates: tuple[Gate, ...]
    primary_metric: str
    higher_is_better: bool = False
    not_worse_than_champion: bool = True
    champion_tolerance: float = Field(0.0, ge=0, description="allowed slack vs the champion")


class Prices(_Frozen):
    """What a training costs, per hour of each resource it held (in one currency, yours): an
    entry left out costs nothing. See docs/operations.md, "What each training used"."""

    gpu_hour: float = Field(0.0, ge=0, description="per GPU-hour (GPUs measured by NVML)")
    cpu_hour: float = Field(0.0, ge=0, description="per requested CPU core and hour")
    memory_gib_hour: float = Field(0.0, ge=0, description="per GiB of requested memory and hour")


class ComputeSpec(_Frozen):
    """What the training step asks of its compute backend."""

    cpu: str = "1"
    memory: str = "2Gi"
    gpu: int = Field(0, ge=0, description="GPUs per node")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    image: str = "ml-platform:latest"
    nodes: int = Field(1, ge=1, description="nodes (pods) training together; > 1 means DDP")
    max_pending: float = Field(
        600, gt=0,
        description="seconds the training pod may stay Pending (not scheduled, image not pulled) "
                    "before the step fails naming the scheduler's or the kubelet's reason; raise it "
                    "on a pool that scales up GPU nodes on demand",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="more labels on the training pod, e.g. kueue.x-k8s.io/queue-name for a queue")
    annotations: dict[str, str] = Field(default_factory=dict,
                                        description="more annotations on the training pod")
    scheduler_name: str | None = Field(
        None, description="the scheduler of the training pod (default: the chart's, else the "
                          "cluster's default scheduler)")
    processes_per_node: int | None = Field(
        None, ge=1,
        description="training processes per node; default one per GPU (`gpu`), 1 without GPUs. "
                    "Over one process in all trains with DistributedDataParallel under torchrun",
    )
    prices: Prices | None = Field(
        None, description="this model's price table, instead of the cluster-wide one "
                          "(`$ML_PLATFORM_PRICES`, the chart's `costs.prices`); None: that one, "
                          "and no cost estimate when there is none")
    min_gpu_utilization: float = Field(
        30, ge=0, le=100,
        description="percent: a training whose mean GPU utilisation stays below this gets a "
                    "warning from the `gpu_utilization` check on `trained`")

    @model_validator(mode="after")
    def _one_gpu_per_process(self) -> ComputeSpec:
        if self.gpu and self.processes_per_node and self.processes_per_node > self.gpu:
            raise ValueError(f"processes_per_node={self.processes_per_node} exceeds gpu={self.gpu}: "
                             "each training process on a GPU node needs its own GPU")
        return self

    @property
    def processes(self) -> int:
        """Training processes per node, resolved: what a TrainingRequest's `processes` gets."""
        return self.processes_per_node or max(self.gpu, 1)

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes


_NOT_TRAINED = ("prices", "min_gpu_utilization")
"""`compute` fields left out of the spec's fingerprint (hence of the training code version):
changing them reuses the trained runs."""


class BatchInferenceSpec(_Frozen):
    """Batch predictions: `<model>/predictions`, each validated day scored with the production
    version, partitioned like the dataset."""

    enabled: bool = Field(
        False, description="add `<model>/predictions`: every validated day scored with the "
                           "production version, one Parquet table per day, run with the "
                           "dataset's retrain runs; a promotion marks the days scored by the "
                           "old version stale")


class ModelSpec(_Frozen):
    """One model: its data, training, promotion gates, compute needs and freshness."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    owner: str
    dataset: DatasetSpec
    training: TrainingSpec
    promotion: PromotionSpec
    compute: ComputeSpec = ComputeSpec()
    freshness: FreshnessWindow = FreshnessWindow(warn_hours=48, fail_hours=96)
    batch_inference: BatchInferenceSpec = BatchInferenceSpec()

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        """What one section names must exist in another: training columns among the
        dataset's, gate and primary metrics among those the task produces."""
        declared = sorted(self.dataset.columns)
        for field_name in ("target", "group_column"):
            column = getattr(self.training, field_name)
            if column is not None and column not in self.dataset.columns:
                raise SpecFieldError(f"training.{field_name}",
                                     f"column {column!r} is not a declared dataset column; "
                                     f"declared: {declared}")
        known = metrics_of(self.training.task)
        why = f"not a metric of task {self.training.task!r}; choose one of {list(known)}"
        for i, gate in enumerate(self.promotion.gates):
            if gate.metric not in known:
                raise SpecFieldError(f"promotion.gates.{i}.metric", f"{gate.metric!r} is {why}")
        if self.promotion.primary_metric not in known:
            raise SpecFieldError("promotion.primary_metric",
                                 f"{self.promotion.primary_metric!r} is {why}")
        return self

    @property
    def group_columns(self) -> tuple[str, ...]:
        """Columns the feature table keeps besides key and date: the ranking group
        (`training.group_column`), none for pointwise models."""
        return (self.training.group_column,) if self.training.group_column else ()

    @property
    def query_columns(self) -> tuple[str, ...]:
        """Ranking: the columns whose joint value names one query (the date and the group:
        one user's feed of one day), the unit of ranking metrics and of the splits. ()
        otherwise."""
        return (self.dataset.date_column, *self.group_columns) if self.training.task == "ranking" else ()

    @property
    def fingerprint(self) -> str:
        """Short hash of the spec, canonical (key order does not count: a spec rewritten with
        its columns in another order is the same spec): part of the training code version.
        What a training costs, when its utilisation warns and `batch_inference` (what is
        scored, not what is trained) are left out: changing them reuses the trained runs."""
        dump = self.model_dump(mode="json", exclude={"compute": set(_NOT_TRAINED),
                                                     "batch_inference": True})
        canonical = json.dumps(dump, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class SpecError(ValueError):
    """A model spec that cannot be used; the message (one line) names the file and the field."""


def describe_error(exc: ValidationError) -> str:
    """A pydantic error as one line: `field.path: message` for each error, `; `-joined."""
    parts = []
    for err in exc.errors():
        loc, message = ".".join(str(p) for p in err["loc"]), err["msg"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SpecFieldError):
            loc, message = ".".join(p for p in (loc, cause.field) if p), cause.message
        elif isinstance(cause, ValueError):
            message = str(cause)
        parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the safe loader, in C when built


def load_spec(path: Path) -> ModelSpec:
    """Parse and validate one spec file; errors are one line naming the file and the field
    at fault, e.g. `invalid model spec x.yaml: promotion.primary_metric: 'ndcg' is not ...`."""
    try:
        # libyaml's loader: ten times faster than PyYAML's Python one, which took most of the
        # time of loading a thousand specs (docs/benchmarks.md)
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)
        return ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"invalid model spec {path}: {describe_error(exc)}") from exc
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())  # PyYAML's message spans lines
        raise SpecError(f"model spec {path} is not valid YAML: {problem}") from exc


def load_specs(directory: Path | None = None) -> list[ModelSpec]:
    """All specs in `directory` (default: `$ML_PLATFORM_SPEC_DIR`, else the shipped ones),
    sorted by model name; names must be unique."""
    directory = directory or Path(os.environ.get(SPEC_DIR_ENV) or SPEC_DIR)
    if not directory.is_dir() or not any(directory.glob("*.yaml")):
        raise SpecError(f"no model specs (*.yaml) in {directory}: check {SPEC_DIR_ENV}")
    specs = sorted((load_spec(p) for p in directory.glob("*.yaml")), key=lambda s: s.name)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SpecError(f"duplicate model names in {directory}: {names}")
    return specs
