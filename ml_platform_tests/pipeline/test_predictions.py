"""Batch predictions (`<model>/predictions`, `batch_inference` in the spec): each validated day
scored with the production version and recording it; a promotion (a forced manual one) and a
rollback make the days scored by the other version stale in Dagster's own stale status (what
the UI shows); re-scoring brings them back; lineage goes from a prediction day to its version;
`ml-platform predictions` and `lineage --predictions` (in process). Real MLflow server, real
SQLite Dagster instance, real training; nothing is faked."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from ml_platform import names
from ml_platform.cli import main
from ml_platform.ops.execute import run_model_pipeline
from ml_platform.ops.lineage import prediction_lineage, render_prediction
from ml_platform.ops.predictions import rescore, scored_days
from ml_platform.ops.registry import promote, rollback
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key
from ml_platform.storage.lake import Lake
from ml_platform.storage.landing import LandingZone
from ml_platform_tests.pipeline.conftest import DAYS, START, Platform, small_spec
from ml_platform_tests.services import env

DAYS_SCORED = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]


def _versions(platform: Platform) -> dict[str, tuple[str, bool]]:
    defs = build_definitions([platform.spec])
    return {d.day: (d.version, d.stale) for d in scored_days(defs, platform.spec, platform.instance)}


def test_predictions_follow_production_and_go_stale_when_it_moves(platform: Platform) -> None:
    spec, instance = platform.spec, platform.instance
    assert spec.batch_inference.enabled  # listing_price ships with it
    defs = build_definitions([spec])
    assert model_key(spec.name, "predictions") in \
        defs.resolve_job_def(names.pipeline_job(spec.name)).asset_layer.executable_asset_keys

    # the model's pipeline (the demo's run) scores its days once production moved
    assert platform.run().success and platform.production() == "1"
    assert _versions(platform) == {d: ("1", False) for d in DAYS_SCORED}
    table = Lake().read_parquet(names.predictions_lake_key(spec.name, DAYS_SCORED[-1]))
    assert list(table.columns) == ["booking_id", "booking_date", "predicted_nightly_price",
                                   "model_version"]
    assert len(table) == spec.dataset.rows_per_day and set(table["model_version"]) == {"1"}
    assert table["predicted_nightly_price"].between(1, 2000).all()

    # v2 (a weak model, refused by the gates; trained as `demo --retrain` does, the days left
    # as validated) forced into production from the CLI: the days scored by v1 are stale,
    # because production's data version changed
    weak = small_spec(spec.name, shuffle_labels=True)
    assert run_model_pipeline(build_definitions([weak]), weak, instance, LandingZone(),
                              retrain_only=True, log_level="WARNING").success
    assert platform.production() == "1"
    actions = {"instance": instance, "tracker": platform.tracker, "lake": Lake()}
    promote(spec, "2", "drill", force=True, **actions)
    stale = scored_days(defs, spec, instance)
    assert {(d.version, d.stale) for d in stale} == {("1", True)}
    assert stale[0].stale_because.startswith(f"{spec.name}/production: has a new")

    line = render_prediction(prediction_lineage(spec, instance, platform.tracker, DAYS_SCORED[0]))
    assert "scored by v1" in line and "stale: production is v2" in line

    # one re-scoring of the old days: scored by v2, fresh again
    assert all(r.success for r in rescore(defs, spec, instance, DAYS_SCORED[:3]))
    assert _versions(platform) == {d: ("2" if d in DAYS_SCORED[:3] else "1", d not in
                                       DAYS_SCORED[:3]) for d in DAYS_SCORED}

    # a rollback to v1: the days v1 scored are fresh again, those v2 scored are stale
    rollback(spec, None, "weak model", **actions)
    assert _versions(platform) == {d: ("2", True) if d in DAYS_SCORED[:3] else ("1", False)
                                   for d in DAYS_SCORED}

    chain = prediction_lineage(spec, instance, platform.tracker, DAYS_SCORED[0])
    p = chain["predictions"]
    assert (p["version"], p["production_version"], p["scored_by_production"]) == ("2", "1", False)
    assert chain["version"] == "2" and chain["mlflow_run"]["id"] == p["mlflow_run_id"]
    assert chain["partitions"] == DAYS_SCORED  # the days v2 was trained on


def test_cli_lists_stale_days_rescores_them_and_follows_a_day(
        platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After the test above (production back at v1, three days scored by v2)."""
    spec = platform.spec
    (tmp_path / f"{spec.name}.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    with env(ML_PLATFORM_SPEC_DIR=str(tmp_path)):
        assert main(["predictions", spec.name, "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["to_score"] == DAYS_SCORED[:3]

        assert main(["predictions", spec.name, "--rescore"]) == 0
        out = capsys.readouterr().out
        assert "0 stale or not scored" in out and f"{DAYS_SCORED[0]}  v1" in out

        assert main(["lineage", spec.name, "--predictions", DAYS_SCORED[0]]) == 0
        out = capsys.readouterr().out
        assert f"{spec.name}/predictions {DAYS_SCORED[0]}" in out and "scored by v1" in out
        assert f"{spec.name} v1 [production]" in out

        assert main(["lineage", spec.name, "--predictions", "2020-01-01"]) == 2
        assert f"{spec.name} has no predictions for 2020-01-01; scored days: " \
               f"{DAYS_SCORED[0]}..{DAYS_SCORED[-1]}" in capsys.readouterr().err
