"""The feature code on raw rows: what the training path and the served model both run.

A transform takes rows of a dataset's own columns (a booking without its price, an impression
without its click) and returns the float32 feature matrix a network reads. It is
self-contained (numpy and pandas only, no ml_platform import): a logged model carries this
very file as an artifact and loads it from there where ml_platform is not installed, so
serving cannot drift from training. Everything else a
transform needs (which builder, the date column, the category vocabularies) is in its
`config`, a JSON-able dict saved with the model (`model_config`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

Config = dict[str, Any]

BOOKING_NUMERIC = ("bedrooms", "accommodates", "review_score", "nights", "guests",
                   "lead_time_days")
BOOKING_FLAGS = ("has_pool", "has_parking", "has_kitchen")
BOOKING_CATEGORIES = ("neighbourhood", "room_type")
ENGAGEMENT_CATEGORIES = ("user_segment", "item_category")
_ENGAGEMENT_PREFIX = {"user_segment": "segment", "item_category": "category"}

# The kind of value each raw column must hold: int, float (ints accepted), bool, string, date.
_BOOKING_INPUTS = {
    "neighbourhood": "string", "room_type": "string", "bedrooms": "int", "accommodates": "int",
    "review_score": "float", "n_reviews": "int", "has_pool": "bool", "has_parking": "bool",
    "has_kitchen": "bool", "nights": "int", "guests": "int", "lead_time_days": "int",
}
_ENGAGEMENT_INPUTS = {
    "user_segment": "string", "item_category": "string", "item_quality": "float",
    "item_age_days": "int",
}


def inputs(config: Config) -> dict[str, str]:
    """The raw columns the transform reads and the kind of value each must hold."""
    if config["builder"] == "bookings":
        return {config["date_column"]: "date", **_BOOKING_INPUTS}
    if config["builder"] == "engagement":
        return dict(_ENGAGEMENT_INPUTS)
    raise ValueError(f"unknown feature builder {config['builder']!r}")


def feature_names(config: Config) -> list[str]:
    """The transform's output columns, in model-input order."""
    vocab = config["vocabulary"]
    if config["builder"] == "bookings":
        return [*BOOKING_NUMERIC, "log_reviews", *BOOKING_FLAGS, "is_weekend", "season_sin",
                "season_cos", "last_minute",
                *(f"{c}_{v}" for c in BOOKING_CATEGORIES for v in vocab[c])]
    if config["builder"] == "engagement":
        return [*(f"{_ENGAGEMENT_PREFIX[c]}_{v}" for c in ENGAGEMENT_CATEGORIES for v in vocab[c]),
                "primary_interest", "secondary_interest", "item_quality", "log_item_age"]
    raise ValueError(f"unknown feature builder {config['builder']!r}")


def _kind_ok(series: pd.Series, kind: str) -> bool:
    if kind == "int":
        return ptypes.is_integer_dtype(series) and not ptypes.is_bool_dtype(series)
    if kind == "float":
        return ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series)
    if kind == "bool":
        return ptypes.is_bool_dtype(series)
    if kind == "string":
        return ptypes.is_string_dtype(series)  # object columns: pandas checks the values
    # date: datetime64, or dates / ISO strings that parse (checked on the few distinct values)
    if ptypes.is_datetime64_any_dtype(series):
        return True
    try:
        pd.to_datetime(pd.Series(series.unique()), format="ISO8601")
    except (TypeError, ValueError):
        return False
    return True


def check_inputs(frame: pd.DataFrame, config: Config) -> None:
    """Raise ValueError naming the first missing or mistyped input column, or a null in one."""
    needed = inputs(config)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"missing input column(s) {missing}")
    for column, kind in needed.items():
        if frame[column].isna().any():
            raise ValueError(f"column {column!r} has null values")
        if not _kind_ok(frame[column], kind):
            raise ValueError(f"column {column!r} must hold {kind} values, "
                             f"got dtype {frame[column].dtype}")


def _codes(values: pd.Series, categories: list[str]) -> np.ndarray:
    return pd.Categorical(values.astype(object), categories=categories).codes


def booking_features(frame: pd.DataFrame, config: Config) -> np.ndarray:
    """Listing attributes, stay details, calendar and seasonality of bookings.

    Written into one preallocated float32 matrix (5 million rows take seconds, see
    docs/benchmarks.md); calendar features from the few distinct days, not per row."""
    names = feature_names(config)
    vocab = config["vocabulary"]
    codes, distinct = pd.factorize(frame[config["date_column"]])
    days = pd.to_datetime(pd.Series(distinct), format="ISO8601")
    day_of_year = days.dt.dayofyear.to_numpy(np.float32)[codes]
    weekend = (days.dt.weekday >= 4).to_numpy(np.float32)[codes]
    matrix = np.empty((len(frame), len(names)), dtype=np.float32)
    position = {name: i for i, name in enumerate(names)}

    def put(name: str, values: np.ndarray) -> None:
        matrix[:, position[name]] = values

    for c in (*BOOKING_NUMERIC, *BOOKING_FLAGS):
        put(c, frame[c].to_numpy(np.float32))
    put("log_reviews", np.log1p(frame["n_reviews"].to_numpy(np.float32)))
    put("is_weekend", weekend)
    angle = 2 * np.pi * day_of_year / 365.25
    put("season_sin", np.sin(angle))
    put("season_cos", np.cos(angle))
    put("last_minute", np.exp(-frame["lead_time_days"].to_numpy(np.float32) / 7.0))
    for column in BOOKING_CATEGORIES:
        category = _codes(frame[column], vocab[column])
        for i, value in enumerate(vocab[column]):
            put(f"{column}_{value}", category == i)  # an unknown value: all zeros
    return matrix


def engagement_features(frame: pd.DataFrame, config: Config) -> np.ndarray:
    """Who (segment), what (category, quality, age) and whether the item is the segment's
    primary/secondary interest. The slot an item was shown in (`position`) is deliberately not
    read: a model scoring a new feed cannot know final positions."""
    vocab = config["vocabulary"]
    segments, categories = vocab["user_segment"], vocab["item_category"]
    segment = _codes(frame["user_segment"], segments)
    category = _codes(frame["item_category"], categories)
    columns: list[np.ndarray] = []
    for codes, values in ((segment, segments), (category, categories)):
        columns += [(codes == i).astype(np.float32) for i in range(len(values))]
    interests = config["interests"]  # segment -> [primary category, secondary category]
    primary = np.array([categories.index(interests[s][0]) for s in segments])
    secondary = np.array([categories.index(interests[s][1]) for s in segments])
    known = (segment >= 0) & (category >= 0)  # an unknown label matches nothing
    safe = np.maximum(segment, 0)
    columns.append(((primary[safe] == category) & known).astype(np.float32))
    columns.append(((secondary[safe] == category) & known).astype(np.float32))
    columns.append(frame["item_quality"].to_numpy(np.float32))
    columns.append(np.log1p(frame["item_age_days"].to_numpy(np.float32)))
    return np.stack(columns, axis=1) if len(frame) else np.empty((0, len(columns)), np.float32)


def transform(frame: pd.DataFrame, config: Config) -> np.ndarray:
    """The float32 feature matrix of raw rows `frame` (checked first: `check_inputs`)."""
    check_inputs(frame, config)
    if config["builder"] == "bookings":
        return booking_features(frame, config)
    return engagement_features(frame, config)
