"""Batch predictions (`<model>/predictions`, a spec's `batch_inference`): which version scored
each day, which days Dagster shows as stale since production moved, and re-scoring them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import (  # not exported: what the UI's staleStatus reads
    CachingStaleStatusResolver,
    StaleStatus,
)
from dagster._core.loader import LoadingContext  # not exported

from ml_platform import names
from ml_platform.names import RunTag
from ml_platform.ops.errors import NotFound, UsageError
from ml_platform.ops.execute import _process_tags
from ml_platform.pipeline.keys import model_key
from ml_platform.pipeline.partitions import day_ranges
from ml_platform.pipeline.sensors import range_tags
from ml_platform.pipeline.upstream import all_materializations
from ml_platform.records import PredictionsRecord, RecordError
from ml_platform.specs import ModelSpec
from ml_platform.storage.interfaces import LakeStore


class _Loading(LoadingContext):
    """The loading context the stale-status resolver asks for, on one instance."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._instance, self._loaders = instance, {}

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict[type, Any]:
        return self._loaders


@dataclass(frozen=True)
class ScoredDay:
    """One day of `<model>/predictions`: the version that scored it and whether it is stale."""

    day: str
    version: str
    dagster_run_id: str
    scored_at: float
    rows: int
    lake_key: str
    stale: bool
    stale_because: str
    """Dagster's root causes, e.g. `listing_price/production: has a new data version`."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_predictions(spec: ModelSpec) -> None:
    if not spec.batch_inference.enabled:
        raise UsageError(f"{spec.name} has no predictions: its spec does not enable "
                         "batch_inference (`batch_inference: {enabled: true}`)")


def latest_predictions(instance: dg.DagsterInstance, model: str
                       ) -> dict[str, tuple[PredictionsRecord, dg.EventLogRecord]]:
    """`{day: (record, event)}` of the newest `predictions` materialization of each day."""
    found: dict[str, tuple[PredictionsRecord, dg.EventLogRecord]] = {}
    for event in all_materializations(instance, model_key(model, "predictions")):
        day = event.partition_key
        if day is None or day in found or event.asset_materialization is None:
            continue
        try:
            record = PredictionsRecord.from_metadata(event.asset_materialization.metadata)
        except RecordError:
            continue
        found[day] = (record, event)
    return dict(sorted(found.items()))


def scored_days(defs: dg.Definitions, spec: ModelSpec,
                instance: dg.DagsterInstance) -> list[ScoredDay]:
    """Every scored day of `spec`'s predictions, oldest first, with Dagster's stale status
    (the UI's): stale when production has moved since the day was scored (or the day was
    validated again)."""
    require_predictions(spec)
    key = model_key(spec.name, "predictions")
    resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), _Loading(instance))
    days = []
    for day, (record, event) in latest_predictions(instance, spec.name).items():
        stale = resolver.get_status(key, day) == StaleStatus.STALE
        causes = resolver.get_stale_root_causes(key, day) if stale else []
        days.append(ScoredDay(
            day=day, version=record.version, dagster_run_id=event.run_id,
            scored_at=event.timestamp, rows=int(record.rows.get(day, 0)),
            lake_key=record.lake_keys.get(day, ""), stale=stale,
            stale_because="; ".join(sorted({f"{c.asset_key.to_user_string()}: {c.reason}"
                                             for c in causes}))))
    return days


def rescore(defs: dg.Definitions, spec: ModelSpec, instance: dg.DagsterInstance,
            days: list[str]) -> list[dg.ExecuteInProcessResult]:
    """Score `days` again with the production version, in process: one run of the dataset's
    retrain job, `predictions` alone, per range of consecutive days (what a backfill of the
    asset over those days does through the daemon)."""
    require_predictions(spec)
    if not days:
        raise NotFound(f"{spec.name}: no day to score")
    job = defs.resolve_job_def(names.retrain_job(spec.dataset.name))
    return [
        job.execute_in_process(
            instance=instance, raise_on_error=False,
            asset_selection=[model_key(spec.name, "predictions")],
            tags={**range_tags(first, last), RunTag.TRIGGER: "rescore", **_process_tags()},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        for first, last in day_ranges(days)
    ]


def validated_days(lake: LakeStore, dataset: str) -> list[str]:
    """The days of `dataset` with a validated table in the lake: the days there are to score."""
    prefix = names.validated_lake_key(dataset, "")
    return sorted(k.removeprefix(prefix).removesuffix(".parquet")
                  for k in lake.list_keys(prefix) if k.endswith(".parquet"))


def predictions_status(defs: dg.Definitions, spec: ModelSpec, instance: dg.DagsterInstance,
                       lake: LakeStore) -> dict[str, Any]:
    """Each validated day: scored (by which version, stale or not) or not scored yet; and the
    days a re-scoring would take (stale or not scored)."""
    scored = {d.day: d for d in scored_days(defs, spec, instance)}
    days = sorted(set(validated_days(lake, spec.dataset.name)) | set(scored))
    return {
        "model": spec.name,
        "days": [scored[d].to_dict() if d in scored else {"day": d, "version": None}
                 for d in days],
        "to_score": [d for d in days if d not in scored or scored[d].stale],
    }


def render_predictions(status: dict[str, Any]) -> str:
    lines = [f"{status['model']}/predictions: {len(status['days'])} validated day(s), "
             f"{len(status['to_score'])} stale or not scored"]
    for d in status["days"]:
        if d["version"] is None:
            lines.append(f"  {d['day']}  not scored")
        else:
            state = f"STALE ({d['stale_because']})" if d["stale"] else "fresh"
            lines.append(f"  {d['day']}  v{d['version']}  {d['rows']} rows  {state}")
    return "\n".join(lines)
