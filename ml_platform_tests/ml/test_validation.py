"""Unit tests of `ml_platform.ml.validation`: the five data-quality checks of one landed day,
run against the shipped `listing_price` dataset spec. A clean generated day passes them all;
a table of damaged days (built with `simulation.drills.corrupt` or by hand) each fails exactly the
expected checks, with one-line descriptions that start with the day and name the column and
the count. Dates: timezone-aware timestamps and times of day are rejected (also after a
Parquet round trip, as the pipeline reads them), or normalised with `dataset.date_timezone`;
a day over `dataset.max_rows_factor` times its expected rows fails. Nothing is faked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.ml.validation import (
    CHECK_DESCRIPTIONS,
    CHECK_NAMES,
    CheckOutcome,
    normalise_dates,
    validate,
)
from ml_platform.simulation.drills import corrupt
from ml_platform.simulation.generators import generate
from ml_platform.specs import DatasetSpec, load_specs

DAY = dt.date(2024, 5, 17)


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return next(s for s in load_specs() if s.name == "listing_price").dataset


@pytest.fixture(scope="module")
def clean(spec: DatasetSpec) -> pd.DataFrame:
    return generate(spec.generator, DAY, spec.rows_per_day)


def _run(frame: pd.DataFrame, spec: DatasetSpec, expected_rows: int | None = None
         ) -> dict[str, CheckOutcome]:
    outcomes = validate(frame, spec, day=DAY, expected_rows=expected_rows or spec.rows_per_day)
    assert [o.name for o in outcomes] == list(CHECK_NAMES)
    return {o.name: o for o in outcomes}


def test_clean_day_passes_all_checks(clean: pd.DataFrame, spec: DatasetSpec) -> None:
    outcomes = _run(clean, spec)
    assert {n: o.passed for n, o in outcomes.items()} == dict.fromkeys(CHECK_NAMES, True)
    assert outcomes["schema"].metadata["extra_columns"] == []
    assert outcomes["completeness"].metadata["rows"] == spec.rows_per_day


def test_clean_day_without_partition_date_passes(clean: pd.DataFrame, spec: DatasetSpec) -> None:
    outcomes = validate(clean, spec, day=None, expected_rows=spec.rows_per_day)
    assert all(o.passed for o in outcomes)


def _with_dates_outside(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame.copy()
    bad.loc[bad.index[:30], "booking_date"] = DAY - dt.timedelta(days=1)
    bad.loc[bad.index[30:37], "booking_date"] = DAY + dt.timedelta(days=3)
    return bad


def _with_extra_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(surprise=np.arange(len(frame)))


def _nulls_in_string_column(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame.copy()
    bad.loc[bad.index[:12], "neighbourhood"] = pd.NA
    return bad


@dataclass(frozen=True)
class Case:
    id: str
    damage: Callable[[pd.DataFrame], pd.DataFrame]
    failing: frozenset[str]
    check: str  # whose description is inspected
    mentions: tuple[str, ...]
    expected_rows: int | None = None


def _c(kind: str, target: str = "nightly_price") -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda f: corrupt(f, kind, key="booking_id", target=target)


CASES = [
    Case("missing_column", _c("missing_column", "review_score"), frozenset({"schema"}),
         "schema", ("missing column", "review_score")),
    Case("missing_key_column", _c("missing_column", "booking_id"),
         frozenset({"schema", "duplicates"}), "duplicates", ("booking_id", "missing")),
    Case("wrong_dtype_string_price", _c("wrong_dtype"), frozenset({"schema"}),
         "schema", ("wrong dtype", "nightly_price", "float64")),
    Case("null_flood", _c("null_flood"), frozenset({"nulls"}),
         "nulls", ("nightly_price: 500", "of 1000 rows")),
    Case("nulls_in_string_column", _nulls_in_string_column, frozenset({"nulls"}),
         "nulls", ("neighbourhood: 12",)),
    Case("negative_price", _c("negative_values"), frozenset({"ranges"}),
         "ranges", ("nightly_price: 100",)),
    Case("rows_outside_partition", _with_dates_outside, frozenset({"ranges"}),
         "ranges", ("booking_date: 37",)),
    Case("duplicate_keys", _c("duplicate_keys"), frozenset({"duplicates"}),
         "duplicates", ("50 duplicate", "booking_id")),
    Case("incomplete_day", lambda f: f.head(850), frozenset({"completeness"}),
         "completeness", ("850 of 1000", "short by 150")),
    Case("over_delivered_day_is_complete", lambda f: f.head(850), frozenset(),
         "completeness", ("850 of 800",), expected_rows=800),
    Case("extra_unexpected_column", _with_extra_column, frozenset({"unexpected_columns"}),
         "schema", ("surprise", "extra")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_damaged_day_fails_the_expected_checks(
    case: Case, clean: pd.DataFrame, spec: DatasetSpec
) -> None:
    outcomes = _run(case.damage(clean.copy()), spec, case.expected_rows)
    failing = {n for n, o in outcomes.items() if not o.passed}
    assert failing == case.failing, {n: o.description for n, o in outcomes.items()}
    description = outcomes[case.check].description
    for text in case.mentions:
        assert text in description, description
    for name in case.failing:  # one line: the day first, then the column(s) and the count
        failed = outcomes[name].description
        assert failed.startswith(f"{DAY}: ") and "\n" not in failed, failed
        assert any(ch.isdigit() for ch in failed.removeprefix(f"{DAY}: ")), failed


def test_failure_metadata_carries_the_counts(clean: pd.DataFrame, spec: DatasetSpec) -> None:
    schema = _run(corrupt(clean, "missing_column", key="booking_id", target="nights"),
                  spec)["schema"]
    assert schema.metadata["missing_columns"] == ["nights"]
    nulls = _run(corrupt(clean, "null_flood", key="booking_id", target="nightly_price"),
                 spec)["nulls"]
    assert nulls.metadata == {"nightly_price": 500}
    ranges = _run(_with_dates_outside(clean), spec)["ranges"]
    assert ranges.metadata == {"booking_date": 37}
    completeness = _run(clean.head(850), spec)["completeness"]
    assert completeness.metadata == {"rows": 850, "expected_rows": 1000, "ratio": 0.85}


def test_completeness_threshold_is_inclusive(clean: pd.DataFrame, spec: DatasetSpec) -> None:
    at_threshold = int(spec.rows_per_day * spec.min_completeness)
    assert _run(clean.head(at_threshold), spec)["completeness"].passed
    assert not _run(clean.head(at_threshold - 1), spec)["completeness"].passed


def test_every_check_has_a_description() -> None:
    assert set(CHECK_DESCRIPTIONS) == set(CHECK_NAMES)


def _aware(frame: pd.DataFrame, tz: str = "UTC", hour: int = 0) -> pd.DataFrame:
    stamp = pd.Timestamp(DAY).tz_localize(tz) + pd.Timedelta(hours=hour)
    return frame.assign(booking_date=pd.Series([stamp] * len(frame), index=frame.index))


def _parquet_round_trip(frame: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "day.parquet"
    frame.to_parquet(path, index=False)
    return pd.read_parquet(path)


def test_timezone_aware_dates_are_rejected(clean: pd.DataFrame, spec: DatasetSpec,
                                           tmp_path: Path) -> None:
    """As landed and as read back from Parquet (a tz-aware timestamp column)."""
    for frame in (_aware(clean), _parquet_round_trip(_aware(clean), tmp_path)):
        outcomes = _run(frame, spec)
        assert {n for n, o in outcomes.items() if not o.passed} == {"schema"}
        description = outcomes["schema"].description
        assert description.startswith(f"{DAY}: timezone-aware dates in column booking_date: "
                                      "1000 of 1000 rows"), description
        assert "date_timezone" in description
        assert outcomes["schema"].metadata["date_problems"] == {"aware": 1000, "timed": 0}


def test_mixed_timezones_are_counted_not_raised(clean: pd.DataFrame, spec: DatasetSpec) -> None:
    frame = clean.copy()
    frame["booking_date"] = frame["booking_date"].astype(object)
    frame.loc[frame.index[:3], "booking_date"] = dt.datetime(2024, 5, 17, tzinfo=dt.UTC)
    frame.loc[frame.index[3:5], "booking_date"] = dt.datetime(
        2024, 5, 17, 9, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    outcomes = _run(frame, spec)
    assert "timezone-aware dates in column booking_date: 5 of 1000 rows" in \
        outcomes["schema"].description
    assert outcomes["ranges"].passed  # their own wall-clock day is the file's day


def test_times_of_day_are_rejected(clean: pd.DataFrame, spec: DatasetSpec) -> None:
    frame = clean.assign(booking_date=pd.to_datetime(clean["booking_date"]))
    assert _run(frame, spec)["schema"].passed  # midnight timestamps are calendar dates
    frame.loc[frame.index[:4], "booking_date"] += pd.Timedelta(hours=13)
    schema = _run(frame, spec)["schema"]
    assert not schema.passed
    assert "times of day in date column booking_date: 4 of 1000 rows" in schema.description


def test_date_timezone_normalises_aware_dates(clean: pd.DataFrame, spec: DatasetSpec,
                                              tmp_path: Path) -> None:
    """23:30 UTC on the day before is the file's own day in Paris (UTC+2 in May)."""
    paris = spec.model_copy(update={"date_timezone": "Europe/Paris"})
    landed = _aware(clean.copy(), "UTC", hour=-1)
    landed.loc[landed.index[0], "booking_date"] += pd.Timedelta(minutes=30)
    for frame in (landed, _parquet_round_trip(landed, tmp_path)):
        normalised = normalise_dates(frame, paris)
        assert set(normalised["booking_date"]) == {DAY}
        assert all(o.passed for o in validate(normalised, paris, day=DAY,
                                              expected_rows=spec.rows_per_day))
    # Unset: nothing is changed, and the same frame is rejected.
    assert normalise_dates(landed, spec) is landed
    assert not _run(landed, spec)["schema"].passed
    # In UTC the same rows belong to the day before: out of the partition's range.
    utc = spec.model_copy(update={"date_timezone": "UTC"})
    ranges = _run(normalise_dates(landed, utc), utc)["ranges"]
    assert "booking_date: 1000" in ranges.description


def test_volume_bound(clean: pd.DataFrame, spec: DatasetSpec) -> None:
    """More than `max_rows_factor` x expected rows fails the blocking completeness check."""
    expected = 200  # the clean day's 1000 rows are exactly 5x this
    at_bound = _run(clean, spec, expected_rows=expected)["completeness"]
    assert at_bound.passed
    over = _run(clean, spec, expected_rows=199)["completeness"]
    assert not over.passed and over.blocks
    assert over.description == (f"{DAY}: 1000 rows, above the bound of 995 (5x the 199 "
                                "expected): 5 too many (rows of key booking_id)")
    assert over.metadata["max_rows"] == 995
    strict = spec.model_copy(update={"max_rows_factor": 1.5})
    assert not _run(clean, strict, expected_rows=600)["completeness"].passed
