"""Unit tests of `ml_platform.ml.training_set`: `content_hash` (stable, value-, name- and
order-sensitive, encoding-blind) and the key-hashed train/valid/test split (a key keeps its
split as days are added, fractions are roughly respected, an empty split is refused). Feature
rows come from the real generator and builder; nothing is faked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from ml_platform.ml.features import build_features
from ml_platform.ml.training_set import (
    SPLIT_COLUMN,
    assign_splits,
    content_hash,
    make_training_set,
)
from ml_platform.simulation.bookings import generate_bookings

KEY = "booking_id"
FIRST = dt.date(2024, 2, 1)
FRACTIONS = {"valid_fraction": 0.15, "test_fraction": 0.15}


def _features(days: int, rows: int = 1000) -> pd.DataFrame:
    raw = pd.concat(
        [generate_bookings(FIRST + dt.timedelta(days=i), rows) for i in range(days)],
        ignore_index=True,
    )
    return build_features("bookings", raw, key=KEY, date_column="booking_date",
                          target="nightly_price")


@pytest.fixture(scope="module")
def three_days() -> pd.DataFrame:
    return _features(3)


@pytest.fixture(scope="module")
def five_days() -> pd.DataFrame:
    return _features(5)


def test_content_hash_is_stable(three_days: pd.DataFrame) -> None:
    h = content_hash(three_days)
    assert len(h) == 64
    assert content_hash(three_days.copy()) == h
    assert content_hash(_features(3)) == h  # regenerated from scratch


def test_content_hash_ignores_index_and_file_encoding(
    three_days: pd.DataFrame, tmp_path: Path
) -> None:
    h = content_hash(three_days)
    assert content_hash(three_days.set_axis(range(7, 7 + len(three_days)))) == h
    three_days.to_parquet(tmp_path / "ts.parquet")
    assert content_hash(pd.read_parquet(tmp_path / "ts.parquet")) == h


def test_content_hash_is_sensitive_to_values_names_and_order(three_days: pd.DataFrame) -> None:
    h = content_hash(three_days)
    changed = three_days.copy()
    changed.loc[123, "nightly_price"] += 0.01
    assert content_hash(changed) != h
    assert content_hash(three_days.rename(columns={"nights": "stays"})) != h
    assert content_hash(three_days[three_days.columns[::-1]]) != h
    assert content_hash(three_days.iloc[::-1]) != h
    assert content_hash(three_days.iloc[:-1]) != h


def test_training_set_is_sorted_by_key_with_a_split_column(three_days: pd.DataFrame) -> None:
    shuffled = three_days.sample(frac=1.0, random_state=0)
    ts = make_training_set(shuffled, key=KEY, seed=7, **FRACTIONS)
    assert ts[KEY].is_monotonic_increasing
    assert list(ts.columns) == [*three_days.columns, SPLIT_COLUMN]
    assert set(ts[SPLIT_COLUMN]) == {"train", "valid", "test"}
    # Same rows in, same snapshot out, whatever the input order.
    unshuffled = make_training_set(three_days, key=KEY, seed=7, **FRACTIONS)
    assert content_hash(ts) == content_hash(unshuffled)


def test_a_key_keeps_its_split_when_days_are_added(
    three_days: pd.DataFrame, five_days: pd.DataFrame
) -> None:
    small = make_training_set(three_days, key=KEY, seed=7, **FRACTIONS)
    large = make_training_set(five_days, key=KEY, seed=7, **FRACTIONS)
    joined = small.merge(large[[KEY, SPLIT_COLUMN]], on=KEY, suffixes=("_small", "_large"))
    assert len(joined) == len(small)
    assert (joined[f"{SPLIT_COLUMN}_small"] == joined[f"{SPLIT_COLUMN}_large"]).all()


def test_fractions_are_roughly_respected(five_days: pd.DataFrame) -> None:
    ts = make_training_set(five_days, key=KEY, seed=7, valid_fraction=0.2, test_fraction=0.1)
    share = ts[SPLIT_COLUMN].value_counts(normalize=True)
    assert share["valid"] == pytest.approx(0.2, abs=0.03)
    assert share["test"] == pytest.approx(0.1, abs=0.03)
    assert share["train"] == pytest.approx(0.7, abs=0.03)


def test_seed_changes_the_assignment(three_days: pd.DataFrame) -> None:
    a = assign_splits(three_days[KEY], seed=1, **FRACTIONS)
    b = assign_splits(three_days[KEY], seed=2, **FRACTIONS)
    assert (a != b).mean() > 0.2
    assert (assign_splits(three_days[KEY], seed=1, **FRACTIONS) == a).all()


def test_empty_split_raises(three_days: pd.DataFrame) -> None:
    # Two rows cannot fill three splits.
    with pytest.raises(ValueError, match="empty split"):
        make_training_set(three_days.head(2), key=KEY, seed=7, **FRACTIONS)
