"""End to end with the real daemon: `dagster-daemon` and `mlflow server` run as processes; files
land in the landing folder; the landing sensor registers them and launches the retrain run
(a real run worker process, which starts the real training process); a new model version is
registered and promoted; a corrupt day then fails its blocking check, production stays; a burst
of a good day and a bad sibling trains on the good day alone; a day that never landed is a
missing partition (in `ml-platform status` too) until it lands late, when the sensor takes it
and the model retrains with it; a run whose worker is killed (SIGKILL) is failed by run
monitoring and its day is taken up again; and the daemon keeps running. The spec is the
shipped one with fewer epochs and short sensor timings."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import psutil
import pytest
import yaml

from ml_platform.names import RunTag
from ml_platform.records import TrainingSetRecord
from ml_platform.settings import instance_config
from ml_platform.simulation.landing import land_days
from ml_platform.specs.model_spec import SPEC_DIR
from ml_platform.storage.landing import LandingZone
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.server import MlflowServer

pytestmark = pytest.mark.integration  # starts real servers

START = dt.date(2026, 4, 1)
WAIT_S = 600  # runs queue for the one training slot: generous on a loaded 2-core machine
MODEL = "listing_price"


def _wait(what: str, condition: Callable[[], Any], daemon: dict[str, Any],
          timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon["process"].poll() is not None:
            raise AssertionError((daemon["home"] / "daemon.log").read_text()[-3000:])
        if value := condition():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer
           ) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("daemon_home")
    specs = home / "specs"
    specs.mkdir()
    spec = yaml.safe_load((SPEC_DIR / f"{MODEL}.yaml").read_text())
    spec["training"]["epochs"] = 5
    spec["dataset"].update(sensor_interval_seconds=2, debounce_seconds=3)
    spec["promotion"]["champion_tolerance"] = 5.0
    (specs / f"{MODEL}.yaml").write_text(yaml.safe_dump(spec))
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text(instance_config("local"))
    env = {**os.environ, "ML_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "ML_PLATFORM_SPEC_DIR": str(specs), "MLFLOW_TRACKING_URI": mlflow_server.url}
    saved = {k: os.environ.get(k) for k in ("ML_PLATFORM_HOME", "DAGSTER_HOME")}
    os.environ.update({k: env[k] for k in saved})
    with (home / "daemon.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-m", "ml_platform.definitions"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield {"home": home, "process": process, "instance": dg.DagsterInstance.get(),
               "tracker": MlflowTracker(tracking_uri=mlflow_server.url), "spec_dir": specs}
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=60)
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _land(daemon: dict[str, Any], start: dt.date, days: int, corruption: str | None = None) -> None:
    from ml_platform.specs import load_specs

    (spec,) = load_specs(daemon["spec_dir"])
    land_days(LandingZone(root=str(daemon["home"] / "landing")), spec.dataset, start, days,
              corruption=corruption, damaged_column=spec.training.target)


def _runs_for(instance: dg.DagsterInstance, day: dt.date) -> list[dg.DagsterRun]:
    runs = instance.get_runs(dg.RunsFilter(job_name="bookings_retrain"))
    return [r for r in runs if day.isoformat() in r.tags.get("ml_platform/days", "")]


def _finished(instance: dg.DagsterInstance, day: dt.date) -> dg.DagsterRun | None:
    runs = _runs_for(instance, day)
    return runs[0] if runs and runs[0].is_finished else None


def test_sensor_retrains_promotes_and_stops_bad_data(daemon: dict[str, Any]) -> None:
    instance, tracker, process = daemon["instance"], daemon["tracker"], daemon["process"]

    _land(daemon, START, 5)  # a burst of five files: one run
    first = _wait("the first retrain run", lambda: _finished(instance, START), daemon)
    assert first.status == dg.DagsterRunStatus.SUCCESS, (daemon["home"] / "daemon.log").read_text()
    assert len(_runs_for(instance, START)) == 1
    assert tracker.alias_version(MODEL, "production") == "1"
    assert first.tags["dagster/asset_partition_range_end"] == (START + dt.timedelta(4)).isoformat()

    new_day = START + dt.timedelta(days=5)
    _land(daemon, new_day, 1)
    second = _wait("the new day's run", lambda: _finished(instance, new_day), daemon)
    assert second.status == dg.DagsterRunStatus.SUCCESS
    version = tracker.client().get_model_version(MODEL, "2")
    assert version.tags["dagster.run_id"] == second.run_id
    assert tracker.alias_version(MODEL, "production") == "2"

    bad_day = START + dt.timedelta(days=6)
    _land(daemon, bad_day, 1, corruption="missing_column")
    third = _wait("the bad day's run", lambda: _finished(instance, bad_day), daemon)
    assert third.status == dg.DagsterRunStatus.FAILURE
    records = instance.get_records_for_run(third.run_id).records
    failed = [r.event_log_entry.dagster_event.event_specific_data for r in records
              if r.event_log_entry.dagster_event
              and r.event_log_entry.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
              and not r.event_log_entry.dagster_event.event_specific_data.passed]
    schema = next(e for e in failed if e.check_name == "schema")
    assert bad_day.isoformat() in schema.description and "nightly_price" in schema.description
    assert tracker.alias_version(MODEL, "production") == "2"
    assert len(tracker.client().search_model_versions(f"name = '{MODEL}'")) == 2

    # a burst of a good day and a bad sibling: the bad one is rejected, the good one trains
    good, sibling = START + dt.timedelta(days=7), START + dt.timedelta(days=8)
    _land(daemon, good, 2, corruption="wrong_dtype")
    fourth = _wait("the mixed burst's run", lambda: _finished(instance, sibling), daemon)
    assert fourth.status == dg.DagsterRunStatus.SUCCESS, (daemon["home"] / "daemon.log").read_text()
    newest = max(tracker.client().search_model_versions(f"name = '{MODEL}'"),
                 key=lambda v: int(v.version))
    assert newest.version == "3" and newest.tags["dagster.run_id"] == fourth.run_id
    assert newest.tags["dagster.partitions"].endswith(f"{good.isoformat()} (7)")  # no rejected day
    assert len(_runs_for(instance, sibling)) == 1  # rejected: not retried
    assert process.poll() is None  # the daemon is still running


def _succeeded(instance: dg.DagsterInstance, day: dt.date) -> dg.DagsterRun | None:
    """A run of `day` that succeeded (a run killed by a restarted code server is taken up again
    by the sensor: the day eventually trains)."""
    return next((r for r in _runs_for(instance, day) if r.status == dg.DagsterRunStatus.SUCCESS), None)


def _status(daemon: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "ML_PLATFORM_HOME": str(daemon["home"]),
           "DAGSTER_HOME": str(daemon["home"] / "dagster"),
           "ML_PLATFORM_SPEC_DIR": str(daemon["spec_dir"])}
    done = subprocess.run([sys.executable, "-m", "ml_platform.cli", "status", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["datasets"]["bookings"]


def _trained_days(instance: dg.DagsterInstance) -> list[str]:
    event = instance.get_latest_materialization_event(dg.AssetKey([MODEL, "training_set"]))
    assert event is not None and event.asset_materialization is not None
    return TrainingSetRecord.from_metadata(event.asset_materialization.metadata).partitions


def _kill_run_worker(run: dg.DagsterRun) -> int:
    """SIGKILL the run's worker process (and so its steps' and training's parent)."""
    pid = int(run.tags[RunTag.PID])
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_missing_day_lands_late_and_a_killed_run_is_taken_up_again(daemon: dict[str, Any]) -> None:
    instance, process = daemon["instance"], daemon["process"]
    start = START + dt.timedelta(days=20)
    missing, after = start + dt.timedelta(days=1), start + dt.timedelta(days=2)
    _land(daemon, start, 1)
    _land(daemon, after, 1)
    for day in (start, after):  # runs of their own: no run spans the day that never landed
        _wait(f"a run of {day} to succeed", lambda d=day: _succeeded(instance, d), daemon, WAIT_S)
    assert not _runs_for(instance, missing)
    assert missing.isoformat() in _status(daemon)["missing"]
    raw = dg.AssetKey(["bookings", "raw"])
    assert missing.isoformat() not in instance.get_materialized_partitions(raw)  # missing in the UI

    _land(daemon, missing, 1)  # lands late: picked up, and the model retrains with it
    _wait("a run of the late day to succeed", lambda: _succeeded(instance, missing), daemon, WAIT_S)
    assert missing.isoformat() in _trained_days(instance)
    assert missing.isoformat() not in _status(daemon)["missing"]

    # the run worker killed mid-run: run monitoring fails the run, and the day is taken up again
    killed_day = start + dt.timedelta(days=3)
    _land(daemon, killed_day, 1)
    run = _wait("a run worker to start", lambda: next(
        (r for r in _runs_for(instance, killed_day) if RunTag.PID in r.tags), None), daemon, WAIT_S)
    worker = _kill_run_worker(run)
    failed = _wait("run monitoring to fail the killed run", lambda: (
        instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE), daemon, timeout=WAIT_S)
    assert failed
    ok = _wait("a run of the killed run's day to succeed", lambda: _succeeded(instance, killed_day),
               daemon, timeout=WAIT_S)
    assert ok.run_id != run.run_id and killed_day.isoformat() in _trained_days(instance)
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
    assert process.poll() is None
