"""A 30-day backfill through the real daemon: `raw`/`validated`/`features` run as partition
runs of at most 10 days each (in parallel, up to the run queue's limit), and the unpartitioned
chain from `training_set` on consumes all 30 validated days in one run. Real `dagster-daemon` and `mlflow
server` processes; the backfill is submitted as the UI's "Materialize all" would submit it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_platform.names import STAGES
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key
from ml_platform.settings import instance_config
from ml_platform.simulation.landing import land_days
from ml_platform.specs import load_specs
from ml_platform.specs.model_spec import SPEC_DIR
from ml_platform.storage.landing import LandingZone
from ml_platform.tracking.server import MlflowServer
from ml_platform_tests.services import env

START, DAYS = dt.date(2026, 8, 1), 30


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("backfill_home")
    (home / "specs").mkdir()
    spec = yaml.safe_load((SPEC_DIR / "listing_price.yaml").read_text())
    spec["name"] = "lp_backfill"
    spec["training"]["epochs"] = 3
    spec["dataset"].update(rows_per_day=200, debounce_seconds=3600)  # the sensor stays quiet
    (home / "specs" / "lp_backfill.yaml").write_text(yaml.safe_dump(spec))
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text(instance_config("local"))
    with env(ML_PLATFORM_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
             ML_PLATFORM_SPEC_DIR=str(home / "specs"), MLFLOW_TRACKING_URI=mlflow_server.url):
        yield home


def test_thirty_day_backfill_runs_in_parallel_chunks_then_trains_once(home: Path) -> None:
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    (spec,) = load_specs()
    instance = dg.DagsterInstance.get()
    land_days(LandingZone(), spec.dataset, START, DAYS)
    days = LandingZone().days("bookings")
    assert len(days) == DAYS
    selection = [dg.AssetKey(["bookings", "raw"]), dg.AssetKey(["bookings", "validated"]),
                 *(model_key(spec.name, s) for s in STAGES)]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="bf30", asset_graph=build_definitions([spec]).resolve_asset_graph(),
        partition_names=days, asset_selection=selection, backfill_timestamp=time.time(),
        tags={}, dynamic_partitions_store=instance, all_partitions=False, title=None,
        description=None, run_config=None)
    instance.add_backfill(backfill)

    with (home / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-m", "ml_platform.definitions"],
            env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # a hang guard, generous for a loaded machine
        while instance.get_backfill("bf30").status == BulkActionStatus.REQUESTED:
            assert daemon.poll() is None and time.monotonic() < deadline, \
                (home / "daemon.log").read_text()[-3000:]
            time.sleep(1)
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(timeout=60)

    assert instance.get_backfill("bf30").status == BulkActionStatus.COMPLETED_SUCCESS
    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": "bf30"}))
    chunks = [r for r in records if "dagster/asset_partition_range_start" in r.dagster_run.tags]
    assert len(chunks) == 3  # 30 days in runs of at most 10
    # submitted together, before any finished: the run queue (max_concurrent_runs in
    # dagster.yaml) decides how many run at once
    assert max(r.create_timestamp.timestamp() for r in chunks) < min(r.end_time for r in chunks)
    trains = [r for r in records if r not in chunks]
    assert len(trains) == 1  # the unpartitioned chain: one run over all 30 days
    # each day's features were computed in its chunk, once
    assert instance.get_materialized_partitions(model_key(spec.name, "features")) == set(days)
    training_set = instance.get_latest_materialization_event(model_key(spec.name, "training_set"))
    assert training_set.run_id == trains[0].dagster_run.run_id
    # the newest `window_days` of them
    window = spec.training.window_days or DAYS
    assert training_set.asset_materialization.metadata["partitions"].value == days[-window:]
