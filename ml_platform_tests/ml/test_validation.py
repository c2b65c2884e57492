"""Unit tests of `ml_platform.ml.validation`: the five data-quality checks of one landed day,
run against the shipped `listing_price` dataset spec. A clean generated day passes them all;
a table of damaged days (built with `simulation.drills.corrupt` or by hand) each fails exactly the
expected checks, with descriptions that name the column and the count. Nothing is faked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from ml_platform.ml.validation import CHECK_NAMES, CheckOutcome, validate
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
