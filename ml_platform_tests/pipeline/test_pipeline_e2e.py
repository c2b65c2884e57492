"""The whole graph of `listing_price`, materialized on small data against a real MLflow server
process and a real (SQLite) Dagster instance: landing → ... → serving, a rerun that must not
register twice, a weak model that must not be promoted, and a bad day beside good ones that is
rejected while the good ones go on (production keeps its data). Nothing is faked; the model
name is unique per module run so the shared MLflow server holds no state from other modules."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from ml_platform.pipeline.datasets import validated_key, validated_lake_key
from ml_platform.pipeline.keys import model_key
from ml_platform_tests.pipeline.conftest import DAYS, START, Platform, small_spec


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
    for metric in ("valid_rmse", "valid_loss"):
        assert len(client.get_metric_history(mv.run_id, metric)) == 6
    artifacts = {a.path for a in client.list_artifacts(mv.run_id)}
    assert {"loss_curve.png", "checkpoints", "feature_importance.json",
            "feature_importance.png"} <= artifacts
    # The run's datasets: the three splits of the snapshot, digest = the training-set hash.
    ts_hash = run.data.tags["ml_platform.training_set_hash"]
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert sorted(inputs) == [f"{platform.spec.name}/training_set/{s}"
                              for s in ("test", "train", "valid")]
    for d in inputs.values():
        assert d.dataset.digest == ts_hash[:16]
        assert ts_hash[:16] in d.dataset.source
        tags = {t.key: t.value for t in d.tags}
        assert tags["ml_platform.training_set_hash"] == ts_hash
        assert tags["ml_platform.partition_keys"].count(",") == DAYS - 1

    # MLflow → Dagster: the trained materialization links to the run.
    event = platform.instance.get_latest_materialization_event(
        model_key(platform.spec.name, "trained"))
    meta = event.asset_materialization.metadata
    assert meta["mlflow_run_id"].value == mv.run_id
    assert mv.run_id in meta["mlflow_run_url"].value
    # The most important raw columns, in the dataset's own terms.
    importance = {k.removeprefix("importance."): v.value for k, v in meta.items()
                  if k.startswith("importance.")}
    assert len(importance) == 5 and {"bedrooms", "neighbourhood"} & set(importance)

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
    # the decision is recorded (so serving and the predictions ran), the alias kept
    assert platform.materialized(result, "production") and not platform.production_moved(result)
    assert platform.materialized(result, "serving")


def test_weak_model_is_registered_but_not_promoted(platform: Platform) -> None:
    weak = small_spec(platform.spec.name, shuffle_labels=True)
    result = platform.run(weak, force=True)
    assert result.success
    client = platform.tracker.client()
    candidate = client.get_model_version_by_alias(platform.spec.name, "candidate")
    assert candidate.version == "2"
    assert candidate.tags["ml_platform.gates_passed"] == "false"
    assert candidate.tags["ml_platform.promotion_status"].startswith("rejected: ")
    assert "mae < 12" in candidate.tags["ml_platform.promotion_status"]
    assert platform.production() == "1"
    assert platform.materialized(result, "production") and not platform.production_moved(result)
    kept = next(e.materialization.metadata for e in result.get_asset_materialization_events()
                if e.asset_key == model_key(platform.spec.name, "production"))
    assert (kept["version"].value, kept["candidate_version"].value) == ("1", "2")
    assert kept["decision"].value.startswith("v2 rejected: ") and "mae < 12" in kept["decision"].value
    # the run's days are still scored, by the version that stayed in production
    assert platform.materialized(result, "predictions")
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
def test_bad_day_is_rejected_and_production_keeps_its_data(
    platform: Platform, kind: str, check: str, expected_words: list[str]
) -> None:
    bad_day = START + dt.timedelta(days=DAYS)  # the next day, landed damaged
    platform.land(bad_day, 1, corruption=kind)
    before = platform.production()
    versions_before = len(platform.tracker.client().search_model_versions(
        f"name = '{platform.spec.name}'"))

    result = platform.run()  # every landed day: the good ones go on, the bad one is rejected

    assert result.success
    failed = [e for e in result.get_asset_check_evaluations()
              if e.asset_key == validated_key("bookings") and not e.passed]
    assert check in {e.check_name for e in failed}
    evaluation = next(e for e in failed if e.check_name == check)
    assert evaluation.severity == dg.AssetCheckSeverity.WARN  # other days of the run passed
    assert bad_day.isoformat() in (evaluation.description or "")
    for word in expected_words:
        assert word in (evaluation.description or ""), evaluation.description
    assert not (platform.home / "lake" / validated_lake_key("bookings", bad_day.isoformat())).exists()
    # the training set is the good days', unchanged: the training is reused, nothing moves
    trained = next(e for e in result.get_asset_materialization_events()
                   if e.asset_key == model_key(platform.spec.name, "trained"))
    assert trained.materialization.metadata["reused_run"].value is True
    assert platform.production() == before
    assert len(platform.tracker.client().search_model_versions(
        f"name = '{platform.spec.name}'")) == versions_before


SERVE = """
import json, sys
import mlflow, numpy as np, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(f"models:/{sys.argv[2]}@production")
meta = model.metadata.metadata
sample = pd.read_parquet(sys.argv[3]).sample(200, random_state=0)
raw = sample[[c for c in sample.columns if not c.startswith("f_") and c != meta["target"]]]
pred = np.asarray(model.predict(raw)).reshape(-1)
print(json.dumps({"rows": len(pred), "mae": float(np.abs(pred - sample[meta["target"]]).mean()),
                  "ours": sorted(m for m in sys.modules if m.startswith("ml_platform"))}))
"""


def test_production_model_serves_through_plain_mlflow(platform: Platform, tmp_path) -> None:
    """As a serving system would: a fresh process with MLflow and torch only, the registry
    alias, and raw rows (the landed columns of a sample of the features table, without the
    price); no ml_platform code is imported."""
    import subprocess
    import sys

    features = platform.instance.get_latest_materialization_event(
        model_key(platform.spec.name, "features")).asset_materialization.metadata["path"].value
    out = subprocess.run(
        [sys.executable, "-c", SERVE, platform.tracker.uri, platform.spec.name, features],
        check=True, capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    ).stdout
    served = json.loads(out.strip().splitlines()[-1])
    assert served["rows"] == 200 and served["mae"] < 12
    assert served["ours"] == []
