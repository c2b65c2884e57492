"""`ModelSpec`: everything that differs between models, declared once in YAML."""

from __future__ import annotations

import hashlib
import operator
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SPEC_DIR = Path(__file__).parent
SPEC_DIR_ENV = "ML_PLATFORM_SPEC_DIR"

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FreshnessWindow(_Frozen):
    """How old the newest materialization may get: warn after `warn_hours`, fail after
    `fail_hours` (evaluated by the Dagster daemon, shown in the UI)."""

    warn_hours: float = Field(gt=0)
    fail_hours: float = Field(ge=1 / 60, description="at least a minute (Dagster's limit)")


class ColumnSpec(_Frozen):
    """One landed column: its dtype, whether nulls are allowed and its value range."""

    dtype: Literal["string", "int64", "float64", "bool", "date"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None


class DatasetSpec(_Frozen):
    """A landed dataset: one file per day, validated against `columns`."""

    name: str
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
    require_previous_day_complete: bool = Field(
        False, description="training waits until the day before the newest landed day has "
                           "passed validation (completeness included)")

    @field_validator("columns")
    @classmethod
    def _non_empty(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        if not v:
            raise ValueError("a dataset needs at least one column")
        return v


class TrainingSpec(_Frozen):
    """Model family and hyper-parameters; `task` picks the model and metrics in `ml/`."""

    task: Literal["regression", "ranking"]
    feature_builder: str
    target: str
    group_column: str | None = Field(
        None, description="ranking: the column that, with the dataset's date column, names one "
                          "query (a user's feed of a day); the feature builder keeps it")
    window_days: int | None = Field(
        None, ge=1, description="train on the last N landed days only; None: every landed day")
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


class ComputeSpec(_Frozen):
    """What the training step asks of its compute backend."""

    cpu: str = "1"
    memory: str = "2Gi"
    gpu: int = Field(0, ge=0, description="GPUs per node")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    image: str = "ml-platform:latest"
    nodes: int = Field(1, ge=1, description="nodes (pods) training together; > 1 means DDP")
    processes_per_node: int | None = Field(
        None, ge=1,
        description="training processes per node; default one per GPU (`gpu`), 1 without GPUs. "
                    "Over one process in all trains with DistributedDataParallel under torchrun",
    )

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
        """Short hash of the spec: part of the training code version."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


class SpecError(ValueError):
    """A model spec that cannot be used; the first line names the file and the field."""


def load_spec(path: Path) -> ModelSpec:
    """Parse and validate one spec file; errors name the file and the field at fault."""
    try:
        raw = yaml.safe_load(path.read_text())
        return ModelSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SpecError(f"invalid model spec {path}: {where}: {first['msg']}"
                        f"{f' (and {exc.error_count() - 1} more)' if exc.error_count() > 1 else ''}"
                        f"\n{exc}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"model spec {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc


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
