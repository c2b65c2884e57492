"""The whole graph of `listing_price`, materialized on small data against a real MLflow server
process and a real (SQLite) Dagster instance: landing → ... → serving, a rerun that must not
register twice, a weak model that must not be promoted, and bad days that must not reach
anything downstream. Nothing is faked; the model name is unique per module run so the shared
MLflow server holds no state from other modules."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.datasets import validated_key, validated_lake_key
from ml_platform.pipeline.execute import (
    prepare_dagster_home,
    register_landed_days,
    run_model_pipeline,
)
from ml_platform.pipeline.models import model_key
from ml_platform.specs import ModelSpec, load_specs
from ml_platform.storage.landing import LandingZone
from ml_platform.storage.simulate import land_days
from ml_platform.tracking.mlflow_resource import MlflowTracker

START = dt.date(2026, 3, 1)
DAYS = 6


@dataclass
class Platform:
    home: Path
    instance: dg.DagsterInstance
    spec: ModelSpec
    tracker: MlflowTracker

    def run(self, spec: ModelSpec | None = None, *, force: bool = False
            ) -> dg.ExecuteInProcessResult:
        spec = spec or self.spec
        return run_model_pipeline(build_definitions([spec]), spec, self.instance,
                                  force_retrain=force, log_level="WARNING")

    def land(self, start: dt.date, days: int, corruption: str | None = None) -> None:
        land_days(LandingZone(), self.spec.dataset, start, days, corruption=corruption,
                  damaged_column=self.spec.training.target)
        register_landed_days(self.instance, LandingZone(), self.spec.dataset.name)

    def production(self) -> str | None:
        return self.tracker.alias_version(self.spec.name, "production")

    def materialized(self, result: dg.ExecuteInProcessResult, stage: str) -> bool:
        key = model_key(self.spec.name, stage)
        return any(e.asset_key == key for e in result.get_asset_materialization_events()
                   if e.event_specific_data is not None)


def _small_spec(name: str, **training: object) -> ModelSpec:
    base = next(s for s in load_specs() if s.name == "listing_price")
    return base.model_copy(update={
        "name": name, "training": base.training.model_copy(update={"epochs": 6, **training}),
    })


@pytest.fixture(scope="module")
def platform(platform_home: Path, request: pytest.FixtureRequest) -> Platform:
    name = f"listing_price_e2e_{abs(hash(request.node.nodeid)) % 10**6}"
    prepare_dagster_home()  # the repository's dagster.yaml, as the CLI uses it
    instance = dg.DagsterInstance.get()
    p = Platform(platform_home, instance, _small_spec(name), MlflowTracker())
    p.land(START, DAYS)
    return p


def test_whole_graph_reaches_production(platform: Platform) -> None:
    result = platform.run()
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    for stage in ("features", "training_set", "trained", "evaluation", "registered",
                  "production", "serving"):
        assert platform.materialized(result, stage), stage

    version = platform.production()
    assert version == "1"
    client = platform.tracker.client()
    mv = client.get_model_version(platform.spec.name, version)
    run = client.get_run(mv.run_id)
    # Dagster → MLflow: the run and the version carry the Dagster run and the data identity.
    assert run.data.tags["dagster.run_id"] == result.run_id
    assert mv.tags["dagster.run_id"] == result.run_id
    assert mv.tags["ml_platform.training_set_hash"] == run.data.tags["ml_platform.training_set_hash"]
    assert run.data.metrics["test_mae"] < 12
    assert "valid_mae" in run.data.metrics and "train_loss" in run.data.metrics
    assert len(client.get_metric_history(mv.run_id, "valid_mae")) == 6  # one per epoch
    artifacts = {a.path for a in client.list_artifacts(mv.run_id)}
    assert {"loss_curve.png", "checkpoints"} <= artifacts

    # MLflow → Dagster: the trained materialization links to the run.
    event = platform.instance.get_latest_materialization_event(
        model_key(platform.spec.name, "trained"))
    meta = event.asset_materialization.metadata
    assert meta["mlflow_run_id"].value == mv.run_id
    assert mv.run_id in meta["mlflow_run_url"].value

    manifest = json.loads((platform.home / "lake" / "serving" /
                           f"{platform.spec.name}.json").read_text())
    assert manifest["version"] == version
    assert manifest["model_uri"] == f"models:/{platform.spec.name}@production"
    assert manifest["metrics"]["mae"] < 12


def test_rerun_without_changes_registers_nothing_new(platform: Platform) -> None:
    result = platform.run()
    assert result.success
    versions = platform.tracker.client().search_model_versions(f"name = '{platform.spec.name}'")
    assert [v.version for v in versions] == ["1"]
    assert platform.production() == "1"
    assert not platform.materialized(result, "production")  # nothing moved


def test_weak_model_is_registered_but_not_promoted(platform: Platform) -> None:
    weak = _small_spec(platform.spec.name, shuffle_labels=True)
    result = platform.run(weak, force=True)
    assert result.success
    client = platform.tracker.client()
    candidate = client.get_model_version_by_alias(platform.spec.name, "candidate")
    assert candidate.version == "2"
    assert candidate.tags["ml_platform.gates_passed"] == "false"
    assert candidate.tags["ml_platform.promotion_status"].startswith("rejected: ")
    assert "mae < 12" in candidate.tags["ml_platform.promotion_status"]
    assert platform.production() == "1"
    assert not platform.materialized(result, "production")
    assert not platform.materialized(result, "serving")
    gate = next(e for e in result.get_asset_check_evaluations()
                if e.check_name == "promotion_gates")
    assert not gate.passed


@pytest.mark.parametrize(
    ("kind", "check", "expected_words"),
    [
        ("missing_column", "schema", ["missing column", "nightly_price"]),
        ("negative_values", "ranges", ["nightly_price: 100"]),
        ("null_flood", "nulls", ["nightly_price: 500"]),
    ],
)
def test_bad_day_fails_blocking_check_and_keeps_production(
    platform: Platform, kind: str, check: str, expected_words: list[str]
) -> None:
    bad_day = START + dt.timedelta(days=DAYS)  # the next day, landed damaged
    platform.land(bad_day, 1, corruption=kind)
    before = platform.production()
    versions_before = len(platform.tracker.client().search_model_versions(
        f"name = '{platform.spec.name}'"))

    result = platform.run()

    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations()
              if e.asset_key == validated_key("bookings") and not e.passed]
    assert check in {e.check_name for e in failed}
    description = next(e.description for e in failed if e.check_name == check)
    assert bad_day.isoformat() in description
    for word in expected_words:
        assert word in description, description
    for stage in ("features", "training_set", "trained", "registered", "production", "serving"):
        assert not platform.materialized(result, stage), stage
    assert platform.production() == before
    assert len(platform.tracker.client().search_model_versions(
        f"name = '{platform.spec.name}'")) == versions_before
    assert not (platform.home / "lake" / validated_lake_key("bookings", bad_day.isoformat())).exists()
