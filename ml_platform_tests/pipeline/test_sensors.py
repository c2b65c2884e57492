"""The landing sensor: its pure tick planner (new files, bursts, debounce, restarts, re-landed
files) and the real sensor evaluated against a real SQLite Dagster instance and a real landing
folder. No daemon here (see test_daemon.py); nothing is faked."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg

from ml_platform.names import RunTag
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.sensors import LandingCursor, plan_tick
from ml_platform.simulation.landing import land_days
from ml_platform.specs import load_specs
from ml_platform.storage.landing import LandingZone


def test_new_files_wait_for_the_burst_to_end_then_run_once() -> None:
    cursor = LandingCursor()
    plan = plan_tick(cursor, {"2026-01-01": 100.0}, now=1000.0, debounce_s=30)
    assert plan.new_days == ["2026-01-01"] and plan.run_days == []
    plan = plan_tick(plan.cursor, {"2026-01-01": 100.0, "2026-01-02": 110.0}, now=1010.0,
                     debounce_s=30)
    assert plan.new_days == ["2026-01-02"] and plan.run_days == []
    plan = plan_tick(plan.cursor, {"2026-01-01": 100.0, "2026-01-02": 110.0}, now=1039.0,
                     debounce_s=30)
    assert plan.new_days == [] and plan.run_days == []  # 29 s of quiet: still waiting
    plan = plan_tick(plan.cursor, {"2026-01-01": 100.0, "2026-01-02": 110.0}, now=1041.0,
                     debounce_s=30)
    assert plan.run_days == ["2026-01-01", "2026-01-02"]  # one run for the whole burst
    again = plan_tick(plan.cursor, {"2026-01-01": 100.0, "2026-01-02": 110.0}, now=2000.0,
                      debounce_s=30)
    assert again.new_days == [] and again.run_days == []


def test_a_restarted_daemon_neither_misses_nor_repeats() -> None:
    listing = {"2026-01-01": 100.0, "2026-01-02": 100.0}
    first = plan_tick(LandingCursor(), {"2026-01-01": 100.0}, now=500.0, debounce_s=0)
    restored = LandingCursor.parse(first.cursor.dump())  # what the daemon stored
    assert restored == first.cursor
    # a file with the same timestamp as the watermark, seen only after the restart
    second = plan_tick(restored, listing, now=600.0, debounce_s=0)
    assert second.new_days == ["2026-01-02"] and second.run_days == ["2026-01-02"]
    third = plan_tick(LandingCursor.parse(second.cursor.dump()), listing, now=700.0, debounce_s=0)
    assert third.new_days == [] and third.run_days == []


def test_a_relanded_file_is_new_again() -> None:
    plan = plan_tick(LandingCursor(), {"2026-01-01": 100.0}, now=1.0, debounce_s=0)
    plan = plan_tick(plan.cursor, {"2026-01-01": 250.0}, now=2.0, debounce_s=0)
    assert plan.new_days == ["2026-01-01"] and plan.run_days == ["2026-01-01"]


def test_sensor_requests_one_retrain_for_a_burst(tmp_path: Path) -> None:
    base = next(s for s in load_specs() if s.name == "listing_price")
    spec = base.model_copy(update={"dataset": base.dataset.model_copy(
        update={"debounce_seconds": 0})})
    landing = LandingZone(root=str(tmp_path / "landing"))
    land_days(landing, spec.dataset, dt.date(2026, 2, 1), 3)
    defs = build_definitions([spec])
    sensor = defs.resolve_sensor_def("bookings_landing_sensor")
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"landing": landing},
                                      definitions=defs)
        result = sensor(ctx)
        (request,) = result.run_requests
        assert request.tags["dagster/asset_partition_range_start"] == "2026-02-01"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-02-03"
        assert sensor.job_name == "bookings_retrain"
        # the next tick, with the stored cursor and the run queued: nothing new
        instance.create_run_for_job(defs.resolve_job_def("bookings_retrain"),
                                    tags=request.tags, status=dg.DagsterRunStatus.NOT_STARTED)
        quiet = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                               resources={"landing": landing}, definitions=defs))
        assert quiet.run_requests == []
        # a day landed later: requested alone
        land_days(landing, spec.dataset, dt.date(2026, 2, 4), 1)
        path = Path(landing.path("bookings", "2026-02-04"))
        os.utime(path, (path.stat().st_mtime + 5, path.stat().st_mtime + 5))
        later = sensor(dg.build_sensor_context(instance=instance, cursor=quiet.cursor,
                                               resources={"landing": landing}, definitions=defs))
        assert later.run_requests[0].tags["dagster/asset_partition_range_start"] == "2026-02-04"


def test_days_never_ingested_are_requested_by_range_of_consecutive_days(tmp_path: Path) -> None:
    """A gap (a day that never landed) splits the request, so the missing day is in no run;
    a day whose file is older than the cursor's watermark (held as early, or copied in with
    its old time) is requested all the same."""
    base = next(s for s in load_specs() if s.name == "listing_price")
    spec = base.model_copy(update={"dataset": base.dataset.model_copy(update={"debounce_seconds": 0})})
    landing = LandingZone(root=str(tmp_path / "landing"))
    land_days(landing, spec.dataset, dt.date(2026, 2, 1), 2)
    land_days(landing, spec.dataset, dt.date(2026, 2, 4), 1)
    defs = build_definitions([spec])
    sensor = defs.resolve_sensor_def("bookings_landing_sensor")
    newest = max(landing.listing("bookings").values())
    cursor = LandingCursor(watermark=newest + 100).dump()  # every file is older than the mark
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                resources={"landing": landing}, definitions=defs))
    ranges = [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
              for r in result.run_requests]
    assert ranges == [("2026-02-01", "2026-02-02"), ("2026-02-04", "2026-02-04")]
    assert [r.tags[RunTag.DAYS] for r in result.run_requests] == [
        "2026-02-01,2026-02-02", "2026-02-04"]
