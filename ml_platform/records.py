"""Typed records of what each stage produced: the contract between stages.

One frozen dataclass per stage output. A stage stores its record as the metadata of its
materialization (`to_metadata`: plain values that Dagster shows as text, numbers and JSON) and
the next stage reads it back (`from_metadata`), from the materialization its own run produced
or pinned for it (see `ml_platform.pipeline.upstream`). The promotion record is also what the
registry keeps of every move of `production`.

No Dagster import: the CLI, the tracking layer and the tests use these records too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ml_platform import names


class RecordError(ValueError):
    """Metadata that does not hold a stage's record (written by an older release, or by hand)."""


@dataclass(frozen=True)
class StageRecord:
    """Base of the stage records: conversion to and from materialization metadata."""

    stage: ClassVar[str]

    def to_metadata(self) -> dict[str, Any]:
        """The record's fields as metadata values (lists and dicts become JSON in Dagster)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Self:
        """The record in `metadata` (Dagster metadata values or plain values)."""
        plain = {k: getattr(v, "value", v) for k, v in metadata.items()}
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in plain]
        if missing:
            raise RecordError(f"the {cls.stage} materialization lacks {', '.join(missing)}: "
                              f"materialize {cls.stage} again with this release")
        return cls(**{f.name: plain[f.name] for f in dataclasses.fields(cls) if f.name in plain})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class FeaturesRecord(StageRecord):
    """The feature tables one run computed: one per validated day of its partition range."""

    stage: ClassVar[str] = "features"
    partitions: list[str]
    """The days whose feature table the run wrote (`lake_keys`)."""
    lake_keys: dict[str, str]
    skipped_partitions: list[str] = field(default_factory=list)
    """Days of the range with no validated table (rejected, never landed)."""
    sources: dict[str, str] = field(default_factory=dict)
    """`{day: sha256 of the landed file its validated table came from}`."""
    rows: int = 0


@dataclass(frozen=True)
class TrainingSetRecord(StageRecord):
    """A frozen train/valid/test snapshot, identified by its content hash."""

    stage: ClassVar[str] = "training_set"
    lake_key: str
    training_set_hash: str
    features_hash: str
    """Content hash of the window's feature tables, concatenated oldest day first."""
    partitions: list[str]
    """The validated days of the training window, oldest first."""
    sources: dict[str, str] = field(default_factory=dict)
    """`{day: sha256 of the landed file}`: the exact bytes, kept in the lake (lineage)."""
    rows_train: int = 0
    rows_valid: int = 0
    rows_test: int = 0
    skipped_partitions: list[str] = field(default_factory=list)
    """Days in the window that landed but have no validated table (rejected)."""


@dataclass(frozen=True)
class TrainedRecord(StageRecord):
    """A trained model: its MLflow run and logged model."""

    stage: ClassVar[str] = "trained"
    mlflow_run_id: str
    model_uri: str
    training_set_hash: str
    code_version: str
    reused_run: bool = False


@dataclass(frozen=True)
class EvaluationRecord(StageRecord):
    """The verdict on one candidate: its gates and metrics beside the champion's."""

    stage: ClassVar[str] = "evaluation"
    mlflow_run_id: str
    model_uri: str
    champion_version: str
    """"" when there was no champion."""
    gates_passed: bool
    gates: str
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredRecord(StageRecord):
    """The candidate's MLflow model version."""

    stage: ClassVar[str] = "registered"
    version: str
    model_uri: str
    mlflow_run_id: str
    gates: str
    gates_passed: bool


@dataclass(frozen=True)
class PromotionRecord(StageRecord):
    """One move of `production` (a promotion, a manual promotion or a rollback)."""

    stage: ClassVar[str] = "production"
    model: str
    version: str
    previous_version: str
    """"" when nothing was in production before."""
    kind: str
    reason: str
    triggered_by: str
    at: str
    alias: str = names.PRODUCTION_ALIAS
    metrics: dict[str, float] = field(default_factory=dict)
    gates: str = ""
    forced: bool = False
    dagster_run_id: str = ""


@dataclass(frozen=True)
class PredictionsRecord(StageRecord):
    """The days one run scored, and the production version that scored them."""

    stage: ClassVar[str] = "predictions"
    model: str
    version: str
    """The production version that scored every day of `partitions`."""
    model_uri: str
    mlflow_run_id: str
    """The MLflow run that trained `version`."""
    partitions: list[str]
    lake_keys: dict[str, str]
    rows: dict[str, int]
    """`{day: rows scored}`."""
    sources: dict[str, str] = field(default_factory=dict)
    """`{day: sha256 of the landed file its validated table came from}`."""
    skipped_partitions: list[str] = field(default_factory=list)
    """Days of the range with no validated table (rejected, never landed)."""
