"""Unit tests of `ml_platform.simulation` (bookings, generators, drills): the synthetic
bookings generator (determinism per date, columns and dtypes, plausible prices), the
`generate` registry lookup and every damage kind of `corrupt`. Pure pandas/numpy; nothing is faked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import pytest
from pandas.api import types as ptypes

from ml_platform.ml.vocabulary import NEIGHBOURHOODS, ROOM_TYPES
from ml_platform.simulation.bookings import generate_bookings
from ml_platform.simulation.drills import CORRUPTIONS, corrupt
from ml_platform.simulation.generators import GENERATORS, generate

DAY = dt.date(2024, 3, 1)
ROWS = 400
KEY, TARGET = "booking_id", "nightly_price"

EXPECTED_DTYPES = {
    "booking_id": "string",
    "booking_date": "object",
    "listing_id": "int64",
    "neighbourhood": "string",
    "room_type": "string",
    "bedrooms": "int64",
    "accommodates": "int64",
    "review_score": "float64",
    "n_reviews": "int64",
    "has_pool": "bool",
    "has_parking": "bool",
    "has_kitchen": "bool",
    "nights": "int64",
    "guests": "int64",
    "lead_time_days": "int64",
    "nightly_price": "float64",
}


@pytest.fixture(scope="module")
def day_frame() -> pd.DataFrame:
    return generate_bookings(DAY, ROWS)


def test_same_day_gives_identical_frame(day_frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate_bookings(DAY, ROWS), day_frame)


def test_different_days_differ(day_frame: pd.DataFrame) -> None:
    other = generate_bookings(DAY + dt.timedelta(days=1), ROWS)
    assert not other["nightly_price"].equals(day_frame["nightly_price"])
    assert not other["listing_id"].equals(day_frame["listing_id"])
    assert set(other["booking_id"]).isdisjoint(day_frame["booking_id"])


def test_columns_and_dtypes(day_frame: pd.DataFrame) -> None:
    assert list(day_frame.columns) == list(EXPECTED_DTYPES)
    assert {c: str(t) for c, t in day_frame.dtypes.items()} == EXPECTED_DTYPES
    assert len(day_frame) == ROWS


def test_values_are_plausible(day_frame: pd.DataFrame) -> None:
    assert (day_frame["nightly_price"] > 0).all()
    assert not day_frame.isna().any().any()
    assert day_frame["booking_id"].is_unique
    assert day_frame["booking_id"].str.startswith("20240301-").all()
    assert (day_frame["booking_date"] == DAY).all()
    assert set(day_frame["neighbourhood"]) <= set(NEIGHBOURHOODS)
    assert set(day_frame["room_type"]) <= set(ROOM_TYPES)
    assert (day_frame["guests"] <= day_frame["accommodates"]).all()
    assert day_frame["review_score"].between(3.0, 5.0).all()


def test_generate_dispatches_to_the_registered_generator(day_frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate("bookings", DAY, ROWS), day_frame)


def test_generate_rejects_unknown_generator_listing_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown generator 'nope'") as err:
        generate("nope", DAY, 10)
    for name in GENERATORS:
        assert repr(name) in str(err.value)


def _missing_column(before: pd.DataFrame, after: pd.DataFrame) -> None:
    assert TARGET not in after.columns
    assert list(after.columns) == [c for c in before.columns if c != TARGET]


def _negative_values(before: pd.DataFrame, after: pd.DataFrame) -> None:
    negative = after[TARGET] < 0
    assert negative.sum() == len(before) // 10
    untouched = ~negative
    assert after.loc[untouched, TARGET].equals(before.loc[untouched, TARGET])


def _null_flood(before: pd.DataFrame, after: pd.DataFrame) -> None:
    assert after[TARGET].isna().sum() == len(before) // 2
    assert before[TARGET].notna().all()


def _duplicate_keys(before: pd.DataFrame, after: pd.DataFrame) -> None:
    assert before[KEY].is_unique
    assert after[KEY].duplicated().sum() == max(1, len(before) // 20)
    assert (after[KEY] == before[KEY].iloc[0]).sum() == 1 + max(1, len(before) // 20)


def _wrong_dtype(before: pd.DataFrame, after: pd.DataFrame) -> None:
    assert not ptypes.is_numeric_dtype(after[TARGET])
    assert isinstance(after[TARGET].iloc[0], str)
    assert float(after[TARGET].iloc[0]) == pytest.approx(before[TARGET].iloc[0])


CORRUPTION_EFFECTS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], None]] = {
    "missing_column": _missing_column,
    "negative_values": _negative_values,
    "null_flood": _null_flood,
    "duplicate_keys": _duplicate_keys,
    "wrong_dtype": _wrong_dtype,
}


def test_every_corruption_kind_has_an_effect_test() -> None:
    assert set(CORRUPTION_EFFECTS) == set(CORRUPTIONS)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_produces_what_it_says(kind: str, day_frame: pd.DataFrame) -> None:
    before = day_frame.copy()
    after = corrupt(day_frame, kind, key=KEY, target=TARGET)
    CORRUPTION_EFFECTS[kind](before, after)
    # A damaged copy: the input frame is left alone.
    pd.testing.assert_frame_equal(day_frame, before)
    assert len(after) == len(before)


def test_corrupt_rejects_unknown_kind(day_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown corruption 'melt'"):
        corrupt(day_frame, "melt", key=KEY, target=TARGET)
