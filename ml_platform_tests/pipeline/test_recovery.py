"""Ingestion that never loses a day, through `ingest` (the sensors' work in process) on a real
Dagster instance and MLflow server:

- a bad sibling day (wrong dtype) in a burst is rejected, named with its reason, and the good
  days of the burst reach a new model version;
- an unreadable (0-byte) day is rejected with the reason while the good day beside it trains;
  deleting it withdraws it cleanly (the next ingest has nothing to do and succeeds);
- a killed `ingest` (SIGKILL after its training finished) is repaired by the next one: the run
  left STARTED is marked failed, its days are taken up again, the finished training is reused
  (not retrained) and registered, and no process of the killed command is left;
- after an ingest, the landing sensor requests nothing for the days it took to the end.

Nothing is faked."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_platform import names
from ml_platform.ops.execute import ingest
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key
from ml_platform.records import TrainingSetRecord
from ml_platform.storage.landing import LandingZone
from ml_platform_tests.pipeline.conftest import DAYS, START, Platform

pytestmark = pytest.mark.integration


def _ingest(platform: Platform) -> dict:
    return ingest(build_definitions([platform.spec]), platform.spec.dataset,
                  platform.instance, LandingZone())


def _trained_days(platform: Platform) -> list[str]:
    event = platform.instance.get_latest_materialization_event(
        model_key(platform.spec.name, "training_set"))
    assert event is not None and event.asset_materialization is not None
    return TrainingSetRecord.from_metadata(event.asset_materialization.metadata).partitions


def test_bad_and_unreadable_days_never_block_the_good_ones(platform: Platform) -> None:
    first = _ingest(platform)
    assert first["success"] and platform.production() == "1"

    # a burst of one good day and one with a wrong dtype
    good, bad = START + dt.timedelta(days=DAYS), START + dt.timedelta(days=DAYS + 1)
    platform.land(good, 2, corruption="wrong_dtype")
    report = _ingest(platform)
    assert report["success"], report["failed_steps"]
    assert report["days"] == [good.isoformat(), bad.isoformat()]
    schema = next(c for c in report["failed_checks"] if c["check"] == "schema")
    assert schema["severity"] == "WARN" and bad.isoformat() in schema["description"]
    assert good.isoformat() in _trained_days(platform) and bad.isoformat() not in _trained_days(platform)
    assert [p["version"] for p in report["promoted"]] in (["2"], [])  # trained on the good day
    assert len(platform.tracker.client().search_model_versions(f"name = '{platform.spec.name}'")) == 2

    # an empty file beside another good day: rejected with the reason, the good day trains
    empty, good2 = START + dt.timedelta(days=DAYS + 2), START + dt.timedelta(days=DAYS + 3)
    platform.land(good2, 1)
    landing = Path(LandingZone().path(platform.spec.dataset.name, empty.isoformat()))
    landing.write_bytes(b"")
    report = _ingest(platform)
    assert report["success"], report["failed_steps"]
    assert empty.isoformat() in report["days"]
    assert good2.isoformat() in _trained_days(platform)
    again = _ingest(platform)  # a rejected day is done until it is landed again
    assert again["note"] == "nothing new in the landing zone"
    assert "not a readable Parquet file" in again["rejected_days"][empty.isoformat()]

    landing.unlink()  # withdrawn
    after = _ingest(platform)
    assert after["success"] and after["note"] == "nothing new in the landing zone"
    assert empty.isoformat() not in after["rejected_days"]


KILLED_INGEST = """
import sys
from ml_platform.cli import main
sys.exit(main(["ingest", "--dataset", sys.argv[1]]))
"""


def test_a_killed_ingest_is_repaired_by_the_next(platform: Platform, tmp_path: Path) -> None:
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "spec.yaml").write_text(yaml.safe_dump(platform.spec.model_dump(mode="json")))
    assert _ingest(platform)["success"]
    client, name = platform.tracker.client(), platform.spec.name
    versions_before = len(client.search_model_versions(f"name = '{name}'"))
    finished_before = {r.info.run_id for r in client.search_runs(
        [platform.tracker.experiment_id(name)], "attributes.status = 'FINISHED'")}

    day = START + dt.timedelta(days=DAYS + 10)  # a day no other test of the module lands
    platform.land(day, 1)
    log = tmp_path / "ingest.log"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, platform.spec.dataset.name],
                            env={**os.environ, "ML_PLATFORM_SPEC_DIR": str(spec_dir)},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while True:  # kill it once its training has finished, before registration is done
        finished = {r.info.run_id for r in client.search_runs(
            [platform.tracker.experiment_id(name)], "attributes.status = 'FINISHED'")}
        assert proc.poll() is None, f"the ingest ended before it could be killed: {log.read_text()}"
        if finished - finished_before:
            break
        assert time.monotonic() < deadline, "the training of the ingest never finished"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = next(iter(finished - finished_before))
    started = platform.instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert started, "the killed ingest left no STARTED run: it was killed too late"

    report = _ingest(platform)
    assert report["success"], report["failed_steps"]
    assert report["repaired_runs"] == [started[0].run_id]
    assert day.isoformat() in report["days"]
    trained = platform.instance.get_latest_materialization_event(model_key(name, "trained"))
    assert trained is not None and trained.asset_materialization is not None
    metadata = trained.asset_materialization.metadata
    assert metadata["reused_run"].value is True and metadata["mlflow_run_id"].value == killed
    assert len(client.search_model_versions(f"name = '{name}'")) == versions_before + 1
    assert _living_in_session(proc.pid) == [], "a process of the killed ingest outlived it"


def _living_in_session(sid: int) -> list[str]:
    """The processes of session `sid` still running (zombies, dead but not yet reaped by
    whoever adopted them, hold nothing and are left out)."""
    import psutil

    living = []
    for p in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if os.getsid(p.info["pid"]) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                living.append(" ".join(p.info["cmdline"] or []))
        except (ProcessLookupError, PermissionError):
            continue
    return living


def test_the_sensor_does_not_ingest_again_what_ingest_took_to_the_end(platform: Platform) -> None:
    """`make demo` (or `ingest`) then `make dev`: the landing sensor's first tick finds every
    landed day done and requests nothing; a day landed afterwards is requested alone."""
    assert _ingest(platform)["success"]  # every landed day is done
    ds = platform.spec.dataset.model_copy(update={"debounce_seconds": 0})
    spec = platform.spec.model_copy(update={"dataset": ds})
    defs = build_definitions([spec])
    sensor = defs.resolve_sensor_def(names.landing_sensor(ds.name))

    def tick(cursor: str | None) -> dg.SensorResult:
        result = sensor(dg.build_sensor_context(instance=platform.instance, cursor=cursor,
                                                resources={"landing": LandingZone()},
                                                definitions=defs))
        assert isinstance(result, dg.SensorResult)
        return result

    first = tick(None)
    assert first.run_requests == []
    new_day = START + dt.timedelta(days=DAYS + 20)
    platform.land(new_day, 1)
    later = tick(first.cursor)
    (request,) = later.run_requests
    assert request.tags["ml_platform/days"] == new_day.isoformat()
