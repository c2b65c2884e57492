"""Days as daily partitions (`ml_platform.pipeline.partitions`): the window a listing is cut
to (before `start_date`: ignored; after tomorrow: held as early), ranges of consecutive days
(one run each, so no run spans a day that never landed), the missing days `status` shows,
and the migration of a home whose days were dynamic partitions. Real files in a temporary
folder and a real SQLite Dagster instance; nothing is faked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.ops.errors import UsageError
from ml_platform.ops.migrations import migrate_day_partitions
from ml_platform.pipeline.partitions import day_partitions, day_ranges, landed, last_day, missing_days
from ml_platform.specs import DatasetSpec, load_specs
from ml_platform.storage.landing import LandingZone

NOW = dt.datetime(2026, 3, 10, 23, 30, tzinfo=dt.UTC)


def _dataset(start: str = "2026-03-01") -> DatasetSpec:
    base = next(s for s in load_specs() if s.name == "listing_price").dataset
    return base.model_copy(update={"start_date": dt.date.fromisoformat(start)})


def test_the_partitions_run_from_start_date_to_tomorrow() -> None:
    ds = _dataset()
    assert last_day(NOW) == "2026-03-11"
    keys = day_partitions(ds).get_partition_keys(current_time=NOW)
    assert keys[0] == "2026-03-01" and keys[-1] == "2026-03-11" and len(keys) == 11


def test_files_outside_the_partitions_are_ignored_or_held(tmp_path: Path) -> None:
    folder = tmp_path / "bookings"
    folder.mkdir()
    for day in ("2026-02-28", "2026-03-01", "2026-03-11", "2026-03-12"):
        (folder / f"{day}.parquet").write_bytes(b"x")
    listing = landed(LandingZone(root=str(tmp_path)), _dataset(), NOW)
    assert list(listing.days) == ["2026-03-01", "2026-03-11"]
    assert {i.name: i.reason for i in listing.ignored} == {
        "2026-02-28.parquet": "dated before the dataset's start_date 2026-03-01",
        "2026-03-12.parquet": "dated in the future: held until its day's partition exists",
    }
    # a day later, the held file is a day like the others
    assert "2026-03-12" in landed(LandingZone(root=str(tmp_path)), _dataset(),
                                  NOW + dt.timedelta(days=1)).days


def test_consecutive_days_make_one_range_and_gaps_split_them() -> None:
    assert day_ranges([]) == []
    assert day_ranges(["2026-03-02", "2026-03-01", "2026-03-03"]) == [("2026-03-01", "2026-03-03")]
    assert day_ranges(["2026-02-28", "2026-03-01", "2026-03-04", "2026-03-05", "2026-03-09"]) == [
        ("2026-02-28", "2026-03-01"), ("2026-03-04", "2026-03-05"), ("2026-03-09", "2026-03-09")]


def test_missing_days_are_the_gaps_between_landed_days() -> None:
    assert missing_days([]) == []
    assert missing_days(["2026-03-01", "2026-03-04", "2026-03-02"]) == ["2026-03-03"]


def test_a_home_with_dynamic_day_partitions_is_migrated_once() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("bookings_days", ["2026-03-01", "2026-03-02"])
        assert migrate_day_partitions(instance, [_dataset()]) == ["bookings"]
        assert instance.get_dynamic_partitions("bookings_days") == []
        assert migrate_day_partitions(instance, [_dataset()]) == []


def test_a_home_with_days_before_start_date_is_refused_naming_the_setting() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("bookings_days", ["2026-02-27", "2026-03-01"])
        with pytest.raises(UsageError, match=r"bookings days from 2026-02-27, before the spec's "
                                             r"dataset.start_date 2026-03-01: set start_date"):
            migrate_day_partitions(instance, [_dataset()])
        assert len(instance.get_dynamic_partitions("bookings_days")) == 2  # nothing lost
