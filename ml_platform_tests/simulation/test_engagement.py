"""Unit tests of `ml_platform.simulation.engagement`: the synthetic feed-impression generator behind
`feed_ranking` (determinism per date, columns and dtypes, one list of 20 distinct items per
user in slots 1..20, dwell only for clicks, clicks that depend on segment interest, quality,
freshness and slot), its registration in `simulation.generators.GENERATORS`, and a generated day passing every
validation check of the shipped `feed_ranking` dataset spec. Pure pandas/numpy; nothing is
faked."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_platform.ml.validation import CHECK_NAMES, validate
from ml_platform.ml.vocabulary import CATEGORIES, SEGMENT_PREFERENCES, SEGMENTS
from ml_platform.simulation.engagement import (
    AGE_CYCLE_DAYS,
    LIST_LENGTH,
    N_ITEMS,
    N_USERS,
    generate_engagement,
)
from ml_platform.simulation.generators import GENERATORS, generate
from ml_platform.specs import load_specs

DAY = dt.date(2024, 6, 3)
ROWS = 2400

EXPECTED_DTYPES = {
    "impression_id": "string",
    "event_date": "object",
    "user_id": "int64",
    "item_id": "int64",
    "user_segment": "string",
    "item_category": "string",
    "item_quality": "float64",
    "item_age_days": "int64",
    "position": "int64",
    "clicked": "bool",
    "dwell_seconds": "float64",
}


@pytest.fixture(scope="module")
def day_frame() -> pd.DataFrame:
    return generate_engagement(DAY, ROWS)


@pytest.fixture(scope="module")
def many_days() -> pd.DataFrame:
    """Ten days: enough clicks to compare click-through rates between slices."""
    return pd.concat([generate_engagement(DAY + dt.timedelta(days=i), ROWS) for i in range(10)],
                     ignore_index=True)


def test_same_day_is_identical_and_days_differ(day_frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate_engagement(DAY, ROWS), day_frame)
    other = generate_engagement(DAY + dt.timedelta(days=1), ROWS)
    assert not other["user_id"].equals(day_frame["user_id"])
    assert not other["clicked"].equals(day_frame["clicked"])


def test_columns_and_dtypes(day_frame: pd.DataFrame) -> None:
    assert {c: str(t) for c, t in day_frame.dtypes.items()} == EXPECTED_DTYPES
    assert len(day_frame) == ROWS
    assert not day_frame.isna().any().any()
    assert (day_frame["event_date"] == DAY).all()
    assert day_frame["impression_id"].is_unique
    assert set(day_frame["user_segment"]) <= set(SEGMENTS)
    assert set(day_frame["item_category"]) <= set(CATEGORIES)


def test_value_ranges(day_frame: pd.DataFrame) -> None:
    assert day_frame["user_id"].between(1, N_USERS).all()
    assert day_frame["item_id"].between(1, N_ITEMS).all()
    assert day_frame["item_quality"].between(0, 1).all()
    assert day_frame["item_age_days"].between(0, AGE_CYCLE_DAYS - 1).all()
    assert day_frame["position"].between(1, LIST_LENGTH).all()
    assert (day_frame["dwell_seconds"] >= 0).all()


def test_each_user_sees_one_list_of_twenty_distinct_items(day_frame: pd.DataFrame) -> None:
    lists = day_frame.groupby("user_id")
    assert (lists.size() == LIST_LENGTH).all()
    assert len(lists) == ROWS // LIST_LENGTH
    assert (lists["item_id"].nunique() == LIST_LENGTH).all()
    assert (lists["position"].apply(lambda p: sorted(p) == list(range(1, LIST_LENGTH + 1)))).all()
    assert (lists["user_segment"].nunique() == 1).all()  # a user's segment is fixed


def test_user_and_item_attributes_are_a_fixed_universe(many_days: pd.DataFrame) -> None:
    assert (many_days.groupby("user_id")["user_segment"].nunique() == 1).all()
    items = many_days.groupby("item_id")
    assert (items["item_category"].nunique() == 1).all()
    assert (items["item_quality"].nunique() == 1).all()
    # Ages roll forward one day per day on a fixed cycle.
    one = many_days[many_days["item_id"] == many_days["item_id"].iloc[0]]
    age0, day0 = one["item_age_days"].iloc[0], one["event_date"].iloc[0]
    expected = (age0 + one["event_date"].map(lambda d: (d - day0).days)) % AGE_CYCLE_DAYS
    assert (one["item_age_days"] == expected).all()


def test_a_short_last_list_and_too_many_rows(day_frame: pd.DataFrame) -> None:
    short = generate_engagement(DAY, 130)
    assert len(short) == 130
    assert short.groupby("user_id").size().sort_values().tolist() == [10, *[20] * 6]
    with pytest.raises(ValueError, match="universe"):
        generate_engagement(DAY, (N_USERS + 1) * LIST_LENGTH)


def test_dwell_is_positive_exactly_for_clicks(day_frame: pd.DataFrame) -> None:
    clicked = day_frame["clicked"]
    assert (day_frame.loc[clicked, "dwell_seconds"] > 0).all()
    assert (day_frame.loc[~clicked, "dwell_seconds"] == 0).all()
    assert 0.3 < clicked.mean() < 0.7  # "click" = any engagement: a high rate
    assert (day_frame.groupby("user_id")["clicked"].sum() > 0).mean() > 0.95


def _interest(frame: pd.DataFrame) -> pd.Series:
    prefs = frame["user_segment"].map(SEGMENT_PREFERENCES)
    primary = frame["item_category"] == prefs.str[0]
    secondary = frame["item_category"] == prefs.str[1]
    return pd.Series(np.select([primary, secondary], ["primary", "secondary"], "none"),
                     index=frame.index)


def test_clicks_depend_on_affinity_quality_freshness_and_slot(many_days: pd.DataFrame) -> None:
    ctr = many_days.groupby(_interest(many_days))["clicked"].mean()
    assert ctr["primary"] > ctr["secondary"] + 0.1 > ctr["none"] + 0.2, ctr
    quality = many_days.groupby(many_days["item_quality"] > 0.5)["clicked"].mean()
    assert quality[True] > quality[False] + 0.15, quality
    fresh = many_days.groupby(many_days["item_age_days"] < 7)["clicked"].mean()
    assert fresh[True] > fresh[False] + 0.15, fresh
    # Slot 1 is clicked more than slot 20 (position bias plus the legacy ranker's order).
    by_slot = many_days.groupby("position")["clicked"].mean()
    assert by_slot[1] > by_slot[LIST_LENGTH]
    # Clicked items are watched longer when they match the segment's primary interest.
    clicks = many_days[many_days["clicked"]]
    dwell = clicks.groupby(_interest(clicks))["dwell_seconds"].median()
    assert dwell["primary"] > dwell["none"]


def test_registered_as_a_generator() -> None:
    assert GENERATORS["engagement"] is generate_engagement
    pd.testing.assert_frame_equal(generate("engagement", DAY, 100), generate_engagement(DAY, 100))


def test_generated_day_passes_feed_ranking_validation() -> None:
    spec = next(s for s in load_specs() if s.name == "feed_ranking").dataset
    frame = generate(spec.generator, DAY, spec.rows_per_day)
    outcomes = validate(frame, spec, day=DAY, expected_rows=spec.rows_per_day)
    assert [o.name for o in outcomes] == list(CHECK_NAMES)
    assert {o.name: o.passed for o in outcomes} == dict.fromkeys(CHECK_NAMES, True), \
        [o.description for o in outcomes if not o.passed]
