"""People acting on the registry: a manual promotion that must pass the gates unless forced,
a rollback, the promotion history, Dagster's view of both (runless materializations of
production and serving), and lineage both ways after a rollback and a retrain. Real MLflow
server, real SQLite Dagster instance, real training; nothing is faked."""

from __future__ import annotations

import json

import pytest

from ml_platform.names import Tag
from ml_platform.ops.lineage import lineage, trained_on
from ml_platform.ops.registry import GateRefusal, promote, rollback
from ml_platform.pipeline.history import production_history
from ml_platform.pipeline.keys import model_key
from ml_platform.storage.lake import Lake
from ml_platform_tests.pipeline.conftest import DAYS, START, Platform, small_spec


def _serving_version(platform: Platform) -> str:
    path = platform.home / "lake" / "serving" / f"{platform.spec.name}.json"
    return json.loads(path.read_text())["version"]


def _dagster_production(platform: Platform) -> dict[str, object]:
    event = platform.instance.get_latest_materialization_event(
        model_key(platform.spec.name, "production"))
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_promote_rollback_history_and_lineage(platform: Platform) -> None:
    spec, tracker, instance = platform.spec, platform.tracker, platform.instance
    first = platform.run()
    assert first.success and platform.production() == "1"
    weak = platform.run(small_spec(spec.name, shuffle_labels=True), force=True)
    assert weak.success and platform.production() == "1"  # v2: registered, not promoted
    actions = {"instance": instance, "tracker": tracker, "lake": Lake()}

    with pytest.raises(GateRefusal, match=r"v2 not promoted: failed gate\(s\): mae < 12"):
        promote(spec, "2", "try the weak one", force=False, **actions)
    assert platform.production() == "1"

    forced = promote(spec, "2", "incident drill", force=True, **actions)
    assert forced.forced is True and "(FORCED)" in forced.gates
    assert platform.production() == "2" and _serving_version(platform) == "2"
    assert _dagster_production(platform)["kind"] == "manual promotion"

    back = rollback(spec, None, "weak model in production", **actions)
    assert (back.previous_version, back.version) == ("2", "1")
    assert platform.production() == "1" and _serving_version(platform) == "1"
    reflected = _dagster_production(platform)
    assert (reflected["kind"], reflected["version"], reflected["previous_version"]) == (
        "rollback", "1", "2")

    assert [(r.kind, r.version) for r in production_history(instance, spec.name)] == [
        ("promotion", "1"), ("manual promotion", "2"), ("rollback", "1")]
    status = {v: tracker.client().get_model_version(spec.name, v).tags.get(Tag.PROMOTION_STATUS)
              for v in ("1", "2")}
    assert status == {"1": "production (rollback)", "2": None}  # one version claims production
    v1 = tracker.client().get_model_version(spec.name, "1")
    assert f"**{spec.name} v1**, trained by Dagster run [{first.run_id[:8]}](" in v1.description
    assert "Gates: **passed**" in v1.description and "| mae |" in v1.description
    assert f"{START.isoformat()}.." in v1.description
    (logged,) = tracker.client().search_logged_models(
        experiment_ids=[tracker.experiment_id(spec.name)],
        filter_string=f"source_run_id = '{v1.run_id}'")
    assert logged.name == spec.name

    chain = lineage(spec, instance, tracker)  # after the rollback: v1 again
    assert chain["version"] == "1"
    assert chain["dagster_run"]["id"] == first.run_id
    assert len(chain["partitions"]) == DAYS and len(chain["raw_files"]) == DAYS
    assert chain["raw_files"][0]["file"].endswith(f"landing/bookings/{START.isoformat()}.parquet")
    assert chain["training_set"]["dagster_run_id"] == first.run_id
    assert lineage(spec, instance, tracker, version="2")["dagster_run"]["id"] == weak.run_id

    retrain = platform.run(force=True)  # same data and seed as v1: as good, so promoted
    assert retrain.success and platform.production() == "3"
    assert lineage(spec, instance, tracker)["dagster_run"]["id"] == retrain.run_id

    reverse = trained_on(START.isoformat(), "bookings", [spec], instance, tracker)
    assert [(v["version"], v["in_production"]) for v in reverse["model_versions"]] == [
        ("1", False), ("2", False), ("3", True)]
    assert reverse["landed_file"]["partition"] == START.isoformat()
    unseen = trained_on("1999-01-01", "bookings", [spec], instance, tracker)
    assert unseen["model_versions"] == [] and unseen["landed_file"] is None
