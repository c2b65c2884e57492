"""Unit tests of the `engagement` feature builder of `ml_platform.ml.features` and of the query
(group) mechanism ranking needs: the layout key, date, the raw columns (`user_id` among them),
prefixed features, target; float32
features without NaNs; one-hots and segment-interest indicators that match the input; no
`position` feature; `group_columns`/`query_columns`/`group_ids` for both builders; and
`make_training_set(split_by=...)` keeping every user-day query whole in one split. Input rows
come from the real synthetic generator; nothing is faked."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_platform.ml.features import (
    build_features,
    feature_columns,
    group_columns,
    group_ids,
    query_columns,
)
from ml_platform.ml.training_set import SPLIT_COLUMN, assign_splits, make_training_set
from ml_platform.ml.vocabulary import CATEGORIES, SEGMENT_PREFERENCES, SEGMENTS
from ml_platform.simulation.engagement import generate_engagement

KEY, DATE, TARGET = "impression_id", "event_date", "clicked"
FIRST = dt.date(2024, 6, 10)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    # Two days concatenated without resetting the index: the builder must not rely on it.
    return pd.concat([generate_engagement(FIRST, 400),
                      generate_engagement(FIRST + dt.timedelta(days=1), 400)])


@pytest.fixture(scope="module")
def features(raw: pd.DataFrame) -> pd.DataFrame:
    return build_features("engagement", raw, key=KEY, date_column=DATE, target=TARGET)


def test_layout_is_key_date_groups_features_target(features: pd.DataFrame) -> None:
    cols = list(feature_columns("engagement"))
    assert group_columns("engagement") == ("user_id",)
    assert list(features.columns) == [KEY, DATE, "user_id", "item_id", "user_segment",
                                      "item_category", "item_quality", "item_age_days",
                                      "position", "dwell_seconds", *cols, TARGET]
    assert len(cols) == len(set(cols))
    assert "f_position" not in cols  # unknowable when scoring a new feed
    assert features["user_id"].dtype == np.int64


def test_features_are_float32_without_nans(features: pd.DataFrame) -> None:
    block = features[list(feature_columns("engagement"))]
    assert set(block.dtypes) == {np.dtype(np.float32)}
    assert features[TARGET].dtype == np.float32
    assert set(np.unique(features[TARGET])) <= {0.0, 1.0}
    assert np.isfinite(block.to_numpy()).all()


def test_rows_align_with_the_input(raw: pd.DataFrame, features: pd.DataFrame) -> None:
    assert len(features) == len(raw)
    assert features[KEY].tolist() == raw[KEY].tolist()
    assert features[DATE].tolist() == raw[DATE].tolist()
    assert (features["user_id"].to_numpy() == raw["user_id"].to_numpy()).all()
    assert (features[TARGET].to_numpy() == raw[TARGET].to_numpy()).all()
    np.testing.assert_allclose(features["f_item_quality"], raw["item_quality"], rtol=1e-6)
    np.testing.assert_allclose(features["f_log_item_age"], np.log1p(raw["item_age_days"]), rtol=1e-6)


@pytest.mark.parametrize(("prefix", "categories", "source"), [
    ("segment", SEGMENTS, "user_segment"),
    ("category", CATEGORIES, "item_category"),
])
def test_one_hots_match_the_input(raw: pd.DataFrame, features: pd.DataFrame, prefix: str,
                                  categories: tuple[str, ...], source: str) -> None:
    block = features[[f"f_{prefix}_{c}" for c in categories]].to_numpy()
    assert (block.sum(axis=1) == 1).all()
    assert [categories[i] for i in block.argmax(axis=1)] == raw[source].tolist()


def test_interest_indicators_follow_the_segment_preferences(raw: pd.DataFrame,
                                                            features: pd.DataFrame) -> None:
    prefs = raw["user_segment"].map(SEGMENT_PREFERENCES)
    primary = (raw["item_category"] == prefs.str[0]).to_numpy()
    secondary = (raw["item_category"] == prefs.str[1]).to_numpy()
    assert (features["f_primary_interest"].to_numpy() == primary).all()
    assert (features["f_secondary_interest"].to_numpy() == secondary).all()
    assert primary.any() and secondary.any()
    assert not (primary & secondary).any()


def test_unknown_labels_encode_as_all_zeros(raw: pd.DataFrame) -> None:
    odd = raw.head(3).copy()
    odd["user_segment"] = pd.array(["aliens", "aliens", "aliens"], dtype="string")
    out = build_features("engagement", odd, key=KEY, date_column=DATE, target=TARGET)
    assert (out[[f"f_segment_{s}" for s in SEGMENTS]].to_numpy() == 0).all()
    assert (out[["f_primary_interest", "f_secondary_interest"]].to_numpy() == 0).all()


def test_group_helpers_for_both_builders(features: pd.DataFrame) -> None:
    assert group_columns("bookings") == ()
    assert query_columns("bookings", "booking_date") == ("booking_date",)
    assert query_columns("engagement", DATE) == (DATE, "user_id")
    with pytest.raises(ValueError, match="unknown feature builder"):
        group_columns("nope")
    ids = group_ids(features, "engagement", date_column=DATE)
    assert ids.dtype == np.int64 and len(ids) == len(features)
    # One id per (day, user): 20 rows each, and the same user on two days is two queries.
    per_query = features.groupby([DATE, "user_id"]).ngroups
    assert len(np.unique(ids)) == per_query
    assert (np.bincount(ids) == 20).all()
    assert (pd.Series(ids).groupby([features[DATE], features["user_id"]]).nunique() == 1).all()


def test_training_set_keeps_each_query_in_one_split() -> None:
    raw = pd.concat([generate_engagement(FIRST + dt.timedelta(days=i), 2000) for i in range(4)],
                    ignore_index=True)
    feats = build_features("engagement", raw, key=KEY, date_column=DATE, target=TARGET)
    frac = {"valid_fraction": 0.15, "test_fraction": 0.15, "seed": 3}
    ts = make_training_set(feats, key=KEY, split_by=query_columns("engagement", DATE), **frac)
    assert (ts.groupby([DATE, "user_id"])[SPLIT_COLUMN].nunique() == 1).all()
    shares = ts[SPLIT_COLUMN].value_counts(normalize=True)
    assert 0.08 < shares["test"] < 0.22 and 0.08 < shares["valid"] < 0.22
    # Sorted by key: each query's rows are contiguous and in slot order.
    assert ts[KEY].is_monotonic_increasing
    # A query keeps its split when other days are added.
    fewer = make_training_set(feats[feats[DATE] < FIRST + dt.timedelta(days=2)], key=KEY,
                              split_by=query_columns("engagement", DATE), **frac)
    merged = fewer.merge(ts, on=KEY, suffixes=("_a", "_b"))
    assert (merged[f"{SPLIT_COLUMN}_a"] == merged[f"{SPLIT_COLUMN}_b"]).all()
    # A single column name works too, and without split_by rows are split one by one.
    by_user = make_training_set(feats, key=KEY, split_by="user_id", **frac)
    assert (by_user.groupby("user_id")[SPLIT_COLUMN].nunique() == 1).all()
    by_key = make_training_set(feats, key=KEY, **frac)
    assert (by_key[SPLIT_COLUMN].to_numpy() == assign_splits(
        by_key[KEY], valid_fraction=0.15, test_fraction=0.15, seed=3)).all()
    assert (by_key.groupby([DATE, "user_id"])[SPLIT_COLUMN].nunique() > 1).any()
