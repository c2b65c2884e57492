"""Promotions and rollbacks made by people (the CLI), reflected in Dagster as materializations
of `<model>/production` and `<model>/serving`, so asset lineage stays true."""

from __future__ import annotations

import dagster as dg

from ml_platform import names
from ml_platform.ml.training_set import SPLIT_COLUMN
from ml_platform.names import Tag
from ml_platform.ops.errors import NotFound, PlatformError
from ml_platform.pipeline.history import migrate_legacy_history, rollback_target
from ml_platform.pipeline.keys import model_key
from ml_platform.pipeline.model.production import production_event
from ml_platform.pipeline.model.serving import follow_production
from ml_platform.records import PromotionRecord
from ml_platform.serving.endpoint import EndpointError
from ml_platform.specs import ModelSpec
from ml_platform.storage.interfaces import LakeStore
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import actor, move_alias
from ml_platform.tracking.scoring import compare_with_champion


class GateRefusal(RuntimeError):
    """A manual promotion failed its gates (use `--force` to override, on the record)."""


def _reflect(instance: dg.DagsterInstance, tracker: MlflowTracker, lake: LakeStore,
             record: PromotionRecord) -> None:
    instance.report_runless_asset_event(production_event(
        tracker, record, f"{record.kind} by {record.triggered_by}: {record.reason}"))
    try:
        serving = follow_production(tracker, lake, record.model)
    except EndpointError as exc:
        raise PlatformError(f"{record.model}: production is v{record.version}, but {exc}") from exc
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=model_key(record.model, "serving"), metadata=serving))


def require_version(tracker: MlflowTracker, model: str, version: str) -> None:
    """Fails with NotFound, listing the versions there are, when `model` has no `version`."""
    versions = sorted(int(mv.version)
                      for mv in tracker.client().search_model_versions(f"name = '{model}'"))
    if not version.isdigit() or int(version) not in versions:
        known = ", ".join(map(str, versions)) or "none registered yet"
        raise NotFound(f"{model} has no version {version!r}; versions: {known}")


def promote(spec: ModelSpec, version: str, reason: str, *, force: bool,
            instance: dg.DagsterInstance, tracker: MlflowTracker, lake: LakeStore) -> PromotionRecord:
    """Promote `version` after running the spec's gates on its own frozen test split against
    the current champion; `force` promotes despite failed gates, and says so in the record."""
    require_version(tracker, spec.name, version)
    mv = tracker.client().get_model_version(spec.name, version)
    ts_hash = tracker.client().get_run(mv.run_id).data.tags.get(Tag.TRAINING_SET_HASH)
    if not ts_hash:
        raise NotFound(f"{spec.name} v{version} has no training-set hash: not trained here")
    test = lake.read_parquet(names.training_set_lake_key(spec.name, ts_hash))
    test = test[test[SPLIT_COLUMN] == "test"]
    champion = tracker.alias_version(spec.name, names.PRODUCTION_ALIAS)
    cmp = compare_with_champion(spec, tracker.uri, test, f"models:/{spec.name}/{version}", champion)
    if not cmp.report.passed and not force:
        raise GateRefusal(f"{spec.name} v{version} not promoted: {cmp.report.summary()}")
    forced = not cmp.report.passed
    record = move_alias(
        tracker, spec.name, version, expected_current=champion, kind="manual promotion",
        reason=reason, triggered_by=actor(), metrics=cmp.candidate,
        gates=cmp.report.summary() + (" (FORCED)" if forced else ""), forced=forced,
    )
    _reflect(instance, tracker, lake, record)
    return record


def rollback(spec: ModelSpec, to: str | None, reason: str, *, instance: dg.DagsterInstance,
             tracker: MlflowTracker, lake: LakeStore) -> PromotionRecord:
    """Move production back to `to` (default: the version before the current one). No gates:
    a rollback returns to a version that already served."""
    if to is not None:
        require_version(tracker, spec.name, to)
    current = tracker.alias_version(spec.name, names.PRODUCTION_ALIAS)
    migrate_legacy_history(instance, tracker, spec.name)
    try:
        target = to or rollback_target(instance, spec.name, current)
    except LookupError as exc:
        raise PlatformError(f"{exc}: name one with --to") from exc
    record = move_alias(tracker, spec.name, target, expected_current=current, kind="rollback",
                        reason=reason, triggered_by=actor())
    _reflect(instance, tracker, lake, record)
    return record
