"""The local landing zone and lake (`ml_platform.storage.landing`, `.lake`) against the shared
interfaces (`storage.interfaces`) and the day-file contract (`storage.day_files`): what a
listing reads and what it ignores with a reason (names that are not calendar dates, folders,
symlinks leading out of the zone, dangling symlinks, FIFOs), and the typed errors of reading
a day that is gone or not a regular file. Real files in a temporary folder; nothing is faked."""

from __future__ import annotations

import datetime as dt
import os
import pickle
from pathlib import Path

import pandas as pd
import pytest

from ml_platform.storage.day_files import (
    DAY_FILE_PATTERN,
    DayWithdrawn,
    Ignored,
    NotALandedFile,
    day_file_name,
    parse_day_file,
)
from ml_platform.storage.interfaces import LakeStore, LandingStore
from ml_platform.storage.lake import Lake
from ml_platform.storage.landing import LandingZone

FRAME = pd.DataFrame({"booking_id": ["a", "b"], "nightly_price": [120.5, 99.0]})


@pytest.fixture
def zone(tmp_path: Path) -> LandingZone:
    return LandingZone(root=str(tmp_path / "landing"))


def _reasons(zone: LandingStore) -> dict[str, str]:
    return {i.name: i.reason for i in zone.scan("bookings").ignored}


@pytest.mark.parametrize(("name", "expected"), [
    ("2026-01-31.parquet", "2026-01-31"),
    ("2028-02-29.parquet", "2028-02-29"),
    ("2026-13-45.parquet", Ignored("2026-13-45.parquet", "2026-13-45 is not a calendar date")),
    ("2026-02-29.parquet", Ignored("2026-02-29.parquet", "2026-02-29 is not a calendar date")),
    ("bookings.csv", Ignored("bookings.csv", "not a day file (expected YYYY-MM-DD.parquet)")),
    ("2026-01-01.parquet.gz", Ignored("2026-01-01.parquet.gz",
                                      "not a day file (expected YYYY-MM-DD.parquet)")),
    ("2026-01-01.json", None),  # a manifest
    ("2026-01-01.parquet.tmp", None),  # a write in progress
    (".hidden", None),
])
def test_day_file_names(name: str, expected: str | Ignored | None) -> None:
    assert parse_day_file(name) == expected


def test_one_pattern_names_and_parses() -> None:
    assert DAY_FILE_PATTERN.match(day_file_name("2026-01-01"))
    assert parse_day_file(day_file_name("2026-01-01")) == "2026-01-01"


def test_interfaces_and_return_types(zone: LandingZone, tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path / "lake"))
    assert isinstance(zone, LandingStore) and isinstance(lake, LakeStore)
    assert zone.is_shared is False and lake.is_shared is False
    where = zone.land("bookings", dt.date(2026, 1, 2), FRAME, {"rows": 2})
    assert isinstance(where, str) and where == zone.path("bookings", "2026-01-02")
    assert zone.land("bookings", dt.date(2026, 1, 2), FRAME) is None
    assert isinstance(lake.uri("a/b.parquet"), str)
    assert lake.write_parquet("a/b.parquet", FRAME) == lake.uri("a/b.parquet")


def test_listing_reads_only_real_day_files(zone: LandingZone, tmp_path: Path) -> None:
    zone.land("bookings", dt.date(2026, 1, 1), FRAME, {"rows": 2})
    zone.land("bookings", dt.date(2026, 1, 3), FRAME)
    folder = zone.base / "bookings"
    outside = tmp_path / "elsewhere.parquet"
    FRAME.to_parquet(outside)
    (folder / "2026-13-45.parquet").write_bytes(b"x")
    (folder / "2026-01-04.parquet").mkdir()
    (folder / "2026-01-05.parquet").symlink_to(outside)
    (folder / "2026-01-06.parquet").symlink_to(tmp_path / "gone.parquet")
    (folder / "2026-01-07.parquet").symlink_to(folder / "2026-01-01.parquet")  # inside: read
    os.mkfifo(folder / "2026-01-08.parquet")
    (folder / "notes.txt").write_text("hello")
    (folder / "2026-01-09.parquet.tmp").write_bytes(b"partial")

    listing = zone.scan("bookings")
    assert list(listing.days) == ["2026-01-01", "2026-01-03", "2026-01-07"]
    first = listing.days["2026-01-01"]
    assert first.uri == zone.path("bookings", "2026-01-01")
    assert first.size == (folder / "2026-01-01.parquet").stat().st_size > 0
    assert first.mtime == (folder / "2026-01-01.parquet").stat().st_mtime
    assert _reasons(zone) == {
        "2026-13-45.parquet": "2026-13-45 is not a calendar date",
        "2026-01-04.parquet": "a directory, not a file",
        "2026-01-05.parquet": f"symlink leading outside the landing zone (to {outside})",
        "2026-01-06.parquet": f"dangling symlink (to {tmp_path / 'gone.parquet'})",
        "2026-01-08.parquet": "not a regular file",
        "notes.txt": "not a day file (expected YYYY-MM-DD.parquet)",
    }
    # The older views agree and never raise on the same folder.
    assert zone.days("bookings") == ["2026-01-01", "2026-01-03", "2026-01-07"]
    assert list(zone.listing("bookings")) == zone.days("bookings")
    assert zone.scan("other").days == {} and zone.scan("other").ignored == ()


def test_each_ignored_entry_is_new_once(zone: LandingZone) -> None:
    folder = zone.base / "bookings"
    folder.mkdir(parents=True)
    (folder / "2026-13-45.parquet").write_bytes(b"x")
    first = zone.scan("bookings").newly_ignored([])
    assert [i.name for i in first] == ["2026-13-45.parquet"]
    (folder / "2026-00-01.parquet").write_bytes(b"x")
    again = zone.scan("bookings").newly_ignored(i.key for i in first)
    assert [i.name for i in again] == ["2026-00-01.parquet"]


def test_reading_a_vanished_day_raises_day_withdrawn(zone: LandingZone) -> None:
    zone.land("bookings", dt.date(2026, 1, 1), FRAME)
    listed = zone.scan("bookings").days["2026-01-01"]
    Path(listed.uri).unlink()
    with pytest.raises(DayWithdrawn, match="no landed file for bookings 2026-01-01") as info:
        zone.read_bytes("bookings", "2026-01-01")
    assert (info.value.dataset, info.value.day) == ("bookings", "2026-01-01")
    assert isinstance(info.value, FileNotFoundError)  # older handlers keep working
    copy = pickle.loads(pickle.dumps(info.value))  # crosses process boundaries intact
    assert isinstance(copy, DayWithdrawn) and str(copy) == str(info.value)


def test_reading_what_is_not_a_landed_file_raises(zone: LandingZone, tmp_path: Path) -> None:
    folder = zone.base / "bookings"
    folder.mkdir(parents=True)
    secret = tmp_path / "secret.parquet"
    secret.write_bytes(b"not for the platform")
    (folder / "2026-01-05.parquet").symlink_to(secret)
    with pytest.raises(NotALandedFile, match="outside the landing zone") as info:
        zone.read_bytes("bookings", "2026-01-05")
    assert pickle.loads(pickle.dumps(info.value)).reason == info.value.reason
    (folder / "2026-01-06.parquet").mkdir()
    with pytest.raises(NotALandedFile, match="a directory"):
        zone.read_bytes("bookings", "2026-01-06")
    (folder / "2026-01-07.parquet").symlink_to(tmp_path / "missing")
    with pytest.raises(DayWithdrawn):  # a dangling link reads as a day that is gone
        zone.read_bytes("bookings", "2026-01-07")


def test_manifest_outside_the_zone_is_not_read(zone: LandingZone, tmp_path: Path) -> None:
    folder = zone.base / "bookings"
    folder.mkdir(parents=True)
    (tmp_path / "m.json").write_text('{"rows": 1}')
    (folder / "2026-01-05.json").symlink_to(tmp_path / "m.json")
    with pytest.raises(ValueError, match="outside the landing zone"):
        zone.manifest("bookings", "2026-01-05")
    assert zone.manifest("bookings", "2026-01-06") is None
    (folder / "2026-01-07.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(ValueError, match=r"2026-01-07\.json is not valid JSON"):
        zone.manifest("bookings", "2026-01-07")
