"""The landing sensor: its pure tick planner (new files, bursts, debounce, restarts, re-landed
files) and the real sensor evaluated against a real SQLite Dagster instance and a real landing
folder. No daemon here (see test_daemon.py); nothing is faked."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg

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


def test_sensor_registers_partitions_and_requests_one_retrain(tmp_path: Path) -> None:
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
        assert result.dynamic_partitions_requests[0].partition_keys == [
            "2026-02-01", "2026-02-02", "2026-02-03"]
        (request,) = result.run_requests
        assert request.tags["dagster/asset_partition_range_start"] == "2026-02-01"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-02-03"
        assert sensor.job_name == "bookings_retrain"
        # the next tick, with the stored cursor and the partitions registered: nothing new
        instance.add_dynamic_partitions("bookings_days", ["2026-02-01", "2026-02-02", "2026-02-03"])
        quiet = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                               resources={"landing": landing}, definitions=defs))
        assert quiet.run_requests == [] and quiet.dynamic_partitions_requests == []
        # a day landed later: registered and requested alone
        land_days(landing, spec.dataset, dt.date(2026, 2, 4), 1)
        path = Path(landing.path("bookings", "2026-02-04"))
        os.utime(path, (path.stat().st_mtime + 5, path.stat().st_mtime + 5))
        later = sensor(dg.build_sensor_context(instance=instance, cursor=quiet.cursor,
                                               resources={"landing": landing}, definitions=defs))
        assert later.dynamic_partitions_requests[0].partition_keys == ["2026-02-04"]
        assert later.run_requests[0].tags["dagster/asset_partition_range_start"] == "2026-02-04"
