"""feed_ranking waits for a complete previous day: after the day before the newest landed day
fails validation (incomplete: fewer rows than its manifest expects), a run for the newest day
builds features but its blocking `previous_day_complete` check names the day and the shortfall,
and nothing is trained. The production run before it holds the ranking metrics once per epoch
and its datasets (digest = the training-set hash). Real MLflow server, real SQLite Dagster
instance; nothing is faked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.ops.execute import prepare_dagster_home
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key
from ml_platform.specs import load_specs
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform_tests.pipeline.conftest import Platform

START = dt.date(2026, 7, 1)


@pytest.fixture(scope="module")
def ranking(platform_home: Path) -> Platform:
    base = next(s for s in load_specs() if s.name == "feed_ranking")
    spec = base.model_copy(update={
        "name": "fr_previous_day",
        "training": base.training.model_copy(update={"epochs": 2}),
        "dataset": base.dataset.model_copy(update={"rows_per_day": 600}),
    })
    prepare_dagster_home()
    return Platform(platform_home, dg.DagsterInstance.get(), spec, MlflowTracker())


def _run_day(platform: Platform, day: dt.date) -> dg.ExecuteInProcessResult:
    job = build_definitions([platform.spec]).resolve_job_def("engagement_retrain")
    return job.execute_in_process(
        instance=platform.instance, partition_key=day.isoformat(), raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})


def test_incomplete_previous_day_blocks_training(ranking: Platform) -> None:
    ranking.land(START, 3)
    assert ranking.run().success and ranking.production() == "1"
    client = ranking.tracker.client()
    run = client.get_run(client.get_model_version(ranking.spec.name, "1").run_id)
    for metric in ("valid_ndcg_at_10", "valid_precision_at_10", "valid_loss"):
        assert len(client.get_metric_history(run.info.run_id, metric)) == 2  # one per epoch
    assert "valid_mae" not in run.data.metrics and "test_ndcg_at_10" in run.data.metrics
    digest = run.data.tags["ml_platform.training_set_hash"][:16]
    assert {d.dataset.digest for d in run.inputs.dataset_inputs} == {digest}
    incomplete, newest = START + dt.timedelta(days=3), START + dt.timedelta(days=4)
    ranking.land(incomplete, 1, incomplete=0.5)  # half its rows; the manifest expects all
    ranking.land(newest, 1)

    assert not _run_day(ranking, incomplete).success  # its own completeness check stops it
    result = _run_day(ranking, newest)

    assert not result.success
    (check,) = [e for e in result.get_asset_check_evaluations()
                if e.check_name == "previous_day_complete"]
    assert not check.passed
    assert incomplete.isoformat() in check.description
    assert "300 of 600" in check.description and "short by 300" in check.description
    made = {e.asset_key for e in result.get_asset_materialization_events()}
    assert model_key(ranking.spec.name, "trained") not in made
    assert ranking.production() == "1"
