"""Feature builders: a validated landed table in, a numeric feature table out.

Every builder returns the key and date columns, its group columns (`group_columns`: none for
pointwise models, the query id for ranking), its float32 feature columns (in a fixed order,
listed by `feature_columns`) and the target, vectorised so millions of rows take seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ml_platform.ml.vocabulary import CATEGORIES, NEIGHBOURHOODS, ROOM_TYPES, SEGMENTS, affinity_codes

_BOOKING_NUMERIC = (
    "bedrooms", "accommodates", "review_score", "nights", "guests", "lead_time_days",
)
_BOOKING_FLAGS = ("has_pool", "has_parking", "has_kitchen")
BOOKING_FEATURES: tuple[str, ...] = (
    *_BOOKING_NUMERIC,
    "log_reviews",
    *_BOOKING_FLAGS,
    "is_weekend",
    "season_sin",
    "season_cos",
    "last_minute",
    *(f"neighbourhood_{n}" for n in NEIGHBOURHOODS),
    *(f"room_type_{r}" for r in ROOM_TYPES),
)


def _one_hot(values: pd.Series, categories: tuple[str, ...], prefix: str) -> dict[str, np.ndarray]:
    codes = pd.Categorical(values, categories=categories).codes
    return {f"{prefix}_{c}": (codes == i).astype(np.float32) for i, c in enumerate(categories)}


def build_booking_features(frame: pd.DataFrame, *, key: str, date_column: str,
                           target: str) -> pd.DataFrame:
    """Features of bookings: listing attributes, stay details, calendar and seasonality.

    Written into one preallocated float32 matrix: pandas neither consolidates nor copies it,
    which keeps 5 million rows within seconds (see docs/benchmarks.md)."""
    # Calendar features from the few distinct days, not per row.
    codes, distinct = pd.factorize(frame[date_column])
    days = pd.to_datetime(pd.Series(distinct))
    day_of_year = days.dt.dayofyear.to_numpy(np.float32)[codes]
    weekend = (days.dt.weekday >= 4).to_numpy(np.float32)[codes]
    matrix = np.empty((len(frame), len(BOOKING_FEATURES)), dtype=np.float32)
    position = {name: i for i, name in enumerate(BOOKING_FEATURES)}

    def put(name: str, values: np.ndarray) -> None:
        matrix[:, position[name]] = values

    for c in (*_BOOKING_NUMERIC, *_BOOKING_FLAGS):
        put(c, frame[c].to_numpy())
    put("log_reviews", np.log1p(frame["n_reviews"].to_numpy(np.float32)))
    put("is_weekend", weekend)
    angle = 2 * np.pi * day_of_year / 365.25
    put("season_sin", np.sin(angle))
    put("season_cos", np.cos(angle))
    put("last_minute", np.exp(-frame["lead_time_days"].to_numpy(np.float32) / 7.0))
    for column, categories in (("neighbourhood", NEIGHBOURHOODS), ("room_type", ROOM_TYPES)):
        category = pd.Categorical(frame[column], categories=categories).codes
        for i, c in enumerate(categories):
            put(f"{column}_{c}", category == i)
    out = pd.DataFrame(matrix, columns=list(BOOKING_FEATURES), copy=False)
    dates = frame[date_column]
    if not ptypes.is_object_dtype(dates):  # the lake's Parquet gives Python dates already
        dates = pd.to_datetime(dates).dt.date
    out.insert(0, date_column, dates.to_numpy())
    out.insert(0, key, frame[key].to_numpy())
    out[target] = frame[target].to_numpy(dtype=np.float32)
    return out


ENGAGEMENT_FEATURES: tuple[str, ...] = (
    *(f"segment_{s}" for s in SEGMENTS),
    *(f"category_{c}" for c in CATEGORIES),
    "primary_interest",
    "secondary_interest",
    "item_quality",
    "log_item_age",
)
ENGAGEMENT_GROUPS = ("user_id",)


def build_engagement_features(frame: pd.DataFrame, *, key: str, date_column: str,
                              target: str) -> pd.DataFrame:
    """Features of feed impressions for ranking one user's feed: who (segment), what (category,
    quality, age) and whether the item is the segment's primary/secondary interest.

    The slot the item was shown in (`position`) is deliberately not a feature: a model scoring
    a new feed cannot know final positions, and learning the legacy ranker's position bias
    would only teach it to copy that ranker. The target is cast to float32 (clicks: 0/1).
    """
    segment = pd.Categorical(frame["user_segment"], categories=SEGMENTS).codes
    category = pd.Categorical(frame["item_category"], categories=CATEGORIES).codes
    columns: dict[str, np.ndarray] = {}
    columns.update(_one_hot(frame["user_segment"], SEGMENTS, "segment"))
    columns.update(_one_hot(frame["item_category"], CATEGORIES, "category"))
    known = (segment >= 0) & (category >= 0)  # an unknown label matches nothing
    primary, secondary = affinity_codes(np.maximum(segment, 0), np.maximum(category, 0))
    columns["primary_interest"] = (primary & known).astype(np.float32)
    columns["secondary_interest"] = (secondary & known).astype(np.float32)
    columns["item_quality"] = frame["item_quality"].to_numpy(dtype=np.float32)
    columns["log_item_age"] = np.log1p(frame["item_age_days"].to_numpy(dtype=np.float32))
    out = pd.DataFrame(columns, index=frame.index)[list(ENGAGEMENT_FEATURES)]
    out.insert(0, "user_id", frame["user_id"].to_numpy(dtype=np.int64))
    out.insert(0, date_column, pd.to_datetime(frame[date_column]).dt.date.to_numpy())
    out.insert(0, key, frame[key].to_numpy())
    out[target] = frame[target].to_numpy(dtype=np.float32)
    return out.reset_index(drop=True)


FeatureBuilder = Callable[..., pd.DataFrame]
FEATURE_BUILDERS: dict[str, tuple[FeatureBuilder, tuple[str, ...]]] = {
    "bookings": (build_booking_features, BOOKING_FEATURES),
    "engagement": (build_engagement_features, ENGAGEMENT_FEATURES),
}
# Columns a builder keeps between the date column and its features: together with the date
# they name one query (here: one user's feed of one day), the unit of ranking metrics and of
# the train/valid/test split. Builders not listed have none.
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "engagement": ENGAGEMENT_GROUPS,
}


def _lookup(builder: str) -> tuple[FeatureBuilder, tuple[str, ...]]:
    try:
        return FEATURE_BUILDERS[builder]
    except KeyError:
        raise ValueError(
            f"unknown feature builder {builder!r}; known: {sorted(FEATURE_BUILDERS)}"
        ) from None


def feature_columns(builder: str) -> tuple[str, ...]:
    """The feature columns `builder` produces, in model-input order."""
    return _lookup(builder)[1]


def group_columns(builder: str) -> tuple[str, ...]:
    """The group columns `builder` keeps after the date column: () for pointwise builders,
    ("user_id",) for engagement. The layout is key, date, *group columns, *features, target."""
    _lookup(builder)
    return GROUP_COLUMNS.get(builder, ())


def query_columns(builder: str, date_column: str) -> tuple[str, ...]:
    """The columns whose joint value names one query of `builder`'s rows: the date and the
    group columns (engagement: one user's feed of one day). Pass them as `split_by` to
    `make_training_set` so a query's rows never straddle splits."""
    return (date_column, *group_columns(builder))


def group_ids(features: pd.DataFrame, builder: str, *, date_column: str) -> np.ndarray:
    """One int64 id per row for its query (`query_columns`): the `groups` of ranking metrics."""
    cols = list(query_columns(builder, date_column))
    return features.groupby(cols, sort=False, dropna=False).ngroup().to_numpy(np.int64)


def build_features(builder: str, frame: pd.DataFrame, *, key: str, date_column: str,
                   target: str, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Run feature builder `builder` over `frame`; the landed columns `keep` (a ranking
    model's group column) are carried over after the date column if the builder drops them."""
    out = _lookup(builder)[0](frame, key=key, date_column=date_column, target=target)
    for offset, column in enumerate(c for c in keep if c not in out.columns):
        out.insert(2 + offset, column, frame[column].to_numpy())
    return out
