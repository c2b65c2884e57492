"""The promotion and rollback history of a model: the `production` asset's materializations.

Every move of `production` materializes `<model>/production` with its `PromotionRecord` as
metadata: by the pipeline's step, by `promote`/`rollback` (runless materializations), and by
the registry-drift sensor for moves made outside the platform. Dagster's event log is
append-only and queryable, and the UI lists it on the asset's page; `ml-platform history`
reads it here. Homes of earlier releases kept the moves as registered-model tags: those are
copied here once, then removed (`migrate_legacy_history`).
"""

from __future__ import annotations

import dagster as dg

from ml_platform.pipeline.keys import model_key
from ml_platform.records import PromotionRecord, RecordError
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import drop_legacy_record, legacy_records

MIGRATED_FROM = "migrated_from_tag"
"""Metadata of a materialization copied from an earlier release's registered-model tag."""


def production_history(instance: dg.DagsterInstance, model: str) -> list[PromotionRecord]:
    """Every move of `model`'s production alias recorded in Dagster, oldest first."""
    records, cursor = [], None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=model_key(model, "production")), limit=500,
            cursor=cursor, ascending=True)
        for event in page.records:
            materialization = event.asset_materialization
            if materialization is None:
                continue
            try:
                records.append(PromotionRecord.from_metadata(materialization.metadata))
            except (RecordError, TypeError):
                continue  # not a move (hand-made in the UI, or from a release before records)
        if not page.has_more:
            break
        cursor = page.cursor
    return sorted(records, key=lambda r: r.at)  # migrated moves were written after newer ones


def migrate_legacy_history(instance: dg.DagsterInstance, tracker: MlflowTracker,
                           model: str) -> int:
    """Copy the registered-model tags of earlier releases (`ml_platform.promotion.<ms>`) into
    `production` materializations, then delete them; returns how many were copied. A move
    already in Dagster (same time, version and kind) is not copied twice, so a migration
    interrupted half-way is completed by the next one."""
    if not tracker.registered(model):
        return 0
    known = {(r.at, r.version, r.kind) for r in production_history(instance, model)}
    copied = 0
    for tag, record in legacy_records(tracker, model).items():
        if (record.at, record.version, record.kind) not in known:
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=model_key(model, "production"),
                metadata={**record.to_metadata(), MIGRATED_FROM: tag},
                description=f"{record.kind} by {record.triggered_by}: {record.reason} "
                            "(migrated from the registry's tags)"))
            copied += 1
        drop_legacy_record(tracker, model, tag)
    return copied


def rollback_target(instance: dg.DagsterInstance, model: str, current: str | None) -> str:
    """The version production pointed at before `current`."""
    for record in reversed(production_history(instance, model)):
        if record.version == current and record.previous_version:
            return record.previous_version
    raise LookupError(f"{model} has no earlier production version to roll back to")
