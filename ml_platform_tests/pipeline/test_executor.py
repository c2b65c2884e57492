"""The executor of every job (`pipeline.executor`) refuses, before any step starts and with a
message naming the fix, a run of day-partitioned assets that names no day and a run that needs
MLflow when no tracking server is configured; a run naming its days, or of unpartitioned assets
only, goes on. Runs go through `dg.execute_job` (the path of `dagster job execute` and of the
daemon's run workers) on a real SQLite instance; nothing is faked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_platform import names
from ml_platform.ops.execute import prepare_dagster_home
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.executor import missing_days_message
from ml_platform.pipeline.keys import model_key
from ml_platform.simulation.landing import land_days
from ml_platform.specs import load_specs
from ml_platform.storage.landing import LandingZone
from ml_platform_tests.pipeline.conftest import START
from ml_platform_tests.services import env

MODEL = "listing_price"


def listing_price_pipeline() -> dg.JobDefinition:
    """The job as the code location defines it (reconstructable: module level)."""
    return build_definitions().resolve_job_def(names.pipeline_job(MODEL))


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    with env(ML_PLATFORM_HOME=str(tmp_path), DAGSTER_HOME=None, MLFLOW_TRACKING_URI=None,
             ML_PLATFORM_SPEC_DIR=None):
        prepare_dagster_home("local")
        with dg.DagsterInstance.get() as instance:
            yield instance


def _execute(instance: dg.DagsterInstance, **kwargs: object) -> tuple[dg.DagsterRun, list[str]]:
    """Run the job; the run and the step keys it started."""
    result = dg.execute_job(dg.reconstructable(listing_price_pipeline), instance, **kwargs)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    started = [e.step_key for e in result.all_events if e.is_step_start]
    return run, started


def _failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    (record,) = records.records
    error = record.event_log_entry.dagster_event.event_specific_data.error
    return error.message.strip()


def _land(days: int) -> list[str]:
    (spec,) = [s for s in load_specs() if s.name == MODEL]
    return [str(item.day) for item in land_days(LandingZone(), spec.dataset, START, days)]


def test_a_run_without_days_is_refused_before_any_step(instance: dg.DagsterInstance) -> None:
    _land(2)
    run, started = _execute(instance)
    assert run.status == dg.DagsterRunStatus.FAILURE and started == []
    message = _failure(instance, run)
    assert ("bookings/raw, bookings/validated, listing_price/features, listing_price/predictions "
            "are partitioned by day and this run names no day: "
            "run `ml-platform ingest`") in message
    assert f'--tags \'{{"{names.RunTag.PARTITION_RANGE_START}": ' in message
    assert instance.get_latest_materialization_event(dg.AssetKey(["bookings", "raw"])) is None


def test_a_run_needing_mlflow_without_a_server_is_refused(instance: dg.DagsterInstance) -> None:
    days = _land(2)
    tags = {names.RunTag.PARTITION_RANGE_START: days[0], names.RunTag.PARTITION_RANGE_END: days[-1]}
    run, started = _execute(instance, tags=tags)
    assert started == []
    assert (f"RunRefused: {names.pipeline_job(MODEL)}: no MLflow tracking server: set "
            "MLFLOW_TRACKING_URI") in _failure(instance, run)


def test_runs_of_unpartitioned_assets_or_without_mlflow_go_on(instance: dg.DagsterInstance) -> None:
    # the second run of a UI backfill: the unpartitioned chain, no day named
    run, started = _execute(instance, asset_selection=[model_key(MODEL, "training_set")])
    assert started == ["listing_price__training_set"]  # it fails there: nothing validated yet
    days = _land(1)
    run, started = _execute(instance, asset_selection=[dg.AssetKey(["bookings", "raw"])],
                            tags={names.RunTag.PARTITION_RANGE_START: days[0],
                                  names.RunTag.PARTITION_RANGE_END: days[0]})
    assert run.status == dg.DagsterRunStatus.SUCCESS and started[0] == "bookings__raw"


def test_the_message_names_the_days_or_says_to_land_some() -> None:
    assert "no day is known yet" in missing_days_message("j", ["d/raw"], None, None)
    text = missing_days_message("j", ["d/raw"], "2026-01-01", "2026-01-30")
    assert text.endswith("""`dagster job execute -j j ... --tags '{"dagster/asset_partition_range_start": """
                         """"2026-01-01", "dagster/asset_partition_range_end": "2026-01-30"}'`""")
