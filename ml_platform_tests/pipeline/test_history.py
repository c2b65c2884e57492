"""The promotion history as the `production` asset's materializations: read back oldest first,
the rollback target found in it, and a home of an earlier release (one registered-model tag
per move) migrated once: its moves copied into Dagster, the tags removed, nothing copied twice.
Real SQLite Dagster instance and the session's real MLflow server; the model versions point at
tiny run artifacts (only the registry and the event log are under test)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from ml_platform.ops.execute import prepare_dagster_home
from ml_platform.pipeline.history import (
    MIGRATED_FROM,
    migrate_legacy_history,
    production_history,
    rollback_target,
)
from ml_platform.pipeline.keys import model_key
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import RECORD_TAG_PREFIX, move_alias


def _model(tracker: MlflowTracker) -> str:
    client = tracker.client()
    name = f"history_{time.time_ns()}"
    client.create_registered_model(name)
    experiment = client.create_experiment(name)
    for _ in range(3):
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "weights", "model/weights.txt")
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return name


def _legacy_tag(client: MlflowClient, model: str, at_ms: int, version: str, previous: str | None,
                kind: str) -> None:
    """A move as releases before this one recorded it."""
    record = {"model": model, "version": version, "previous_version": previous, "kind": kind,
              "reason": "old", "triggered_by": "dagster", "alias": "production",
              "at": dt_iso(at_ms), "metrics": {"mae": 5.0}, "gates": "", "forced": False,
              "dagster_run_id": ""}
    client.set_registered_model_tag(model, f"{RECORD_TAG_PREFIX}{at_ms:015d}", json.dumps(record))


def dt_iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


@pytest.fixture
def instance(platform_home: Path) -> dg.DagsterInstance:
    prepare_dagster_home()
    return dg.DagsterInstance.get()


def test_history_is_the_production_materializations(instance: dg.DagsterInstance) -> None:
    tracker = MlflowTracker()
    model = _model(tracker)
    with pytest.raises(LookupError, match="no earlier production version"):
        rollback_target(instance, model, None)
    moves = [("1", None, "promotion"), ("3", "1", "promotion"), ("1", "3", "rollback")]
    for version, current, kind in moves:
        record = move_alias(tracker, model, version, expected_current=current, kind=kind,
                            reason="r", triggered_by="test")
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=model_key(model, "production"), metadata=record.to_metadata()))
    instance.report_runless_asset_event(dg.AssetMaterialization(  # hand-made: not a move
        asset_key=model_key(model, "production"), metadata={"note": "by hand"}))
    history = production_history(instance, model)
    assert [(r.kind, r.previous_version, r.version) for r in history] == [
        ("promotion", "", "1"), ("promotion", "1", "3"), ("rollback", "3", "1")]
    assert rollback_target(instance, model, "1") == "3"  # the move that made 1 current
    assert rollback_target(instance, model, "3") == "1"


def test_tags_of_an_earlier_release_are_migrated_once(instance: dg.DagsterInstance) -> None:
    tracker = MlflowTracker()
    model = _model(tracker)
    client = tracker.client()
    _legacy_tag(client, model, 1_767_000_000_000, "1", None, "promotion")
    _legacy_tag(client, model, 1_767_000_100_000, "2", "1", "promotion")
    client.set_registered_model_alias(model, "production", "2")
    newer = move_alias(tracker, model, "3", expected_current="2", kind="manual promotion",
                       reason="new", triggered_by="test")
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=model_key(model, "production"), metadata=newer.to_metadata()))

    assert migrate_legacy_history(instance, tracker, model) == 2
    history = production_history(instance, model)
    assert [(r.previous_version, r.version) for r in history] == [("", "1"), ("1", "2"), ("2", "3")]
    assert not [k for k in client.get_registered_model(model).tags if k.startswith(RECORD_TAG_PREFIX)]
    events = instance.fetch_materializations(model_key(model, "production"), limit=10).records
    assert sum(MIGRATED_FROM in e.asset_materialization.metadata for e in events) == 2

    assert migrate_legacy_history(instance, tracker, model) == 0  # once
    # a migration interrupted after copying, before deleting the tag, is not copied twice
    _legacy_tag(client, model, 1_767_000_100_000, "2", "1", "promotion")
    assert migrate_legacy_history(instance, tracker, model) == 0
    assert len(production_history(instance, model)) == 3
