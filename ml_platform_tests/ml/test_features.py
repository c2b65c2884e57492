"""Unit tests of `ml_platform.ml.features`: the bookings feature builder's column order (raw
columns kept under their names, prefixed features), float32 dtype, absence of NaNs, one-hot
encodings, row alignment with its input and the builder registry's error for an unknown name.
Input rows come from the real synthetic generator; nothing is faked."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_platform.ml.features import build_features, feature_columns
from ml_platform.ml.vocabulary import NEIGHBOURHOODS, ROOM_TYPES
from ml_platform.simulation.bookings import generate_bookings

KEY, DATE, TARGET = "booking_id", "booking_date", "nightly_price"
WEDNESDAY, SATURDAY = dt.date(2024, 7, 3), dt.date(2024, 7, 6)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    # Two days concatenated without resetting the index: the builder must not rely on it.
    return pd.concat([generate_bookings(WEDNESDAY, 150), generate_bookings(SATURDAY, 150)])


@pytest.fixture(scope="module")
def features(raw: pd.DataFrame) -> pd.DataFrame:
    return build_features("bookings", raw, key=KEY, date_column=DATE, target=TARGET)


def test_column_order_is_key_date_raw_features_target(features: pd.DataFrame,
                                                      raw: pd.DataFrame) -> None:
    cols = list(feature_columns("bookings"))
    others = [c for c in raw.columns if c not in (KEY, DATE, TARGET)]
    assert list(features.columns) == [KEY, DATE, *others, *cols, TARGET]
    assert len(cols) == len(set(cols))
    assert all(c.startswith("f_") for c in cols)
    # The raw columns are the landed values, untouched: what a served model is sent.
    for c in others:
        np.testing.assert_array_equal(features[c].to_numpy(), raw[c].to_numpy())


def test_features_are_float32_without_nans(features: pd.DataFrame) -> None:
    block = features[list(feature_columns("bookings"))]
    assert set(block.dtypes) == {np.dtype(np.float32)}
    assert features[TARGET].dtype == np.float32
    assert not block.isna().to_numpy().any()
    assert np.isfinite(block.to_numpy()).all()


@pytest.mark.parametrize(("prefix", "categories", "source"), [
    ("neighbourhood", NEIGHBOURHOODS, "neighbourhood"),
    ("room_type", ROOM_TYPES, "room_type"),
])
def test_one_hot_rows_sum_to_one_and_match_the_category(
    features: pd.DataFrame, raw: pd.DataFrame, prefix: str, categories: tuple[str, ...],
    source: str,
) -> None:
    onehot = features[[f"f_{prefix}_{c}" for c in categories]].to_numpy()
    np.testing.assert_array_equal(onehot.sum(axis=1), np.ones(len(features), dtype=np.float32))
    picked = np.array(categories)[onehot.argmax(axis=1)]
    np.testing.assert_array_equal(picked, raw[source].to_numpy(dtype=str))


def test_rows_stay_aligned_with_input(features: pd.DataFrame, raw: pd.DataFrame) -> None:
    assert len(features) == len(raw)
    assert features.index.equals(pd.RangeIndex(len(raw)))
    np.testing.assert_array_equal(features[KEY].to_numpy(), raw[KEY].to_numpy())
    np.testing.assert_array_equal(features["f_nights"], raw["nights"].to_numpy(np.float32))
    np.testing.assert_allclose(features[TARGET], raw[TARGET].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(features["f_log_reviews"], np.log1p(raw["n_reviews"]), rtol=1e-6)
    np.testing.assert_array_equal(features["f_has_pool"], raw["has_pool"].astype(np.float32))


def test_calendar_features(features: pd.DataFrame) -> None:
    weekend = features.groupby(DATE)["f_is_weekend"].unique()
    assert list(weekend[WEDNESDAY]) == [0.0]
    assert list(weekend[SATURDAY]) == [1.0]
    season = features[["f_season_sin", "f_season_cos"]].to_numpy(np.float64)
    np.testing.assert_allclose((season**2).sum(axis=1), 1.0, rtol=1e-5)
    assert features["f_last_minute"].between(0.0, 1.0).all()


def test_unknown_builder_raises() -> None:
    with pytest.raises(ValueError, match=r"unknown feature builder 'nope'.*bookings"):
        feature_columns("nope")
    with pytest.raises(ValueError, match="unknown feature builder 'nope'"):
        build_features("nope", pd.DataFrame(), key=KEY, date_column=DATE, target=TARGET)
