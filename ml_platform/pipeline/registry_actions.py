"""Promotions and rollbacks made by people (the CLI), reflected in Dagster as materializations
of `<model>/production` and `<model>/serving`, so asset lineage stays true."""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_platform.ml.training_set import SPLIT_COLUMN
from ml_platform.pipeline.models import model_key, production_metadata, serving_metadata
from ml_platform.specs import ModelSpec
from ml_platform.storage.lake import Lake
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import (
    PRODUCTION,
    actor,
    move_alias,
    rollback_target,
    serving_manifest,
)
from ml_platform.tracking.scoring import compare_with_champion


class GateRefusal(RuntimeError):
    """A manual promotion failed its gates (use `--force` to override, on the record)."""


def _reflect(instance: dg.DagsterInstance, spec: ModelSpec, tracker: MlflowTracker, lake: Lake,
             record: dict[str, Any]) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=model_key(spec.name, "production"),
        metadata=production_metadata(tracker, spec.name, record),
        description=f"{record['kind']} by {record['triggered_by']}: {record['reason']}",
    ))
    manifest = serving_manifest(tracker, spec.name)
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=model_key(spec.name, "serving"),
        metadata=serving_metadata(lake, spec.name, manifest),
    ))


def promote(spec: ModelSpec, version: str, reason: str, *, force: bool,
            instance: dg.DagsterInstance, tracker: MlflowTracker, lake: Lake) -> dict[str, Any]:
    """Promote `version` after running the spec's gates on its own frozen test split against
    the current champion; `force` promotes despite failed gates, and says so in the record."""
    mv = tracker.client().get_model_version(spec.name, version)
    ts_hash = tracker.client().get_run(mv.run_id).data.tags.get("ml_platform.training_set_hash")
    if not ts_hash:
        raise LookupError(f"{spec.name} v{version} has no training-set hash: not trained here")
    test = lake.read_parquet(f"{spec.name}/training_set/{ts_hash[:16]}.parquet")
    test = test[test[SPLIT_COLUMN] == "test"]
    champion = tracker.alias_version(spec.name, PRODUCTION)
    cmp = compare_with_champion(spec, tracker.uri, test, f"models:/{spec.name}/{version}", champion)
    if not cmp.report.passed and not force:
        raise GateRefusal(f"{spec.name} v{version} not promoted: {cmp.report.summary()}")
    gates = cmp.report.summary() + (" (FORCED)" if not cmp.report.passed else "")
    record = move_alias(
        tracker, spec.name, version, expected_current=champion, kind="manual promotion",
        reason=reason, triggered_by=actor(),
        details={"gates": gates, "forced": force and not cmp.report.passed,
                 "metrics": cmp.candidate},
    )
    _reflect(instance, spec, tracker, lake, record)
    return record


def rollback(spec: ModelSpec, to: str | None, reason: str, *, instance: dg.DagsterInstance,
             tracker: MlflowTracker, lake: Lake) -> dict[str, Any]:
    """Move production back to `to` (default: the version before the current one). No gates:
    a rollback returns to a version that already served."""
    current = tracker.alias_version(spec.name, PRODUCTION)
    target = to or rollback_target(tracker, spec.name)
    record = move_alias(tracker, spec.name, target, expected_current=current, kind="rollback",
                        reason=reason, triggered_by=actor())
    _reflect(instance, spec, tracker, lake, record)
    return record
