"""Feature builders: a validated landed table in, a numeric feature table out.

Every builder returns the key and date columns, its float32 feature columns (in a fixed
order, listed by `feature_columns`) and the target, vectorised so millions of rows take seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ml_platform.ml.data import NEIGHBOURHOODS, ROOM_TYPES

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
    """Features of bookings: listing attributes, stay details, calendar and seasonality."""
    dates = pd.to_datetime(frame[date_column])
    day_of_year = dates.dt.dayofyear.to_numpy(dtype=np.float32)
    columns: dict[str, np.ndarray] = {
        c: frame[c].to_numpy(dtype=np.float32) for c in _BOOKING_NUMERIC
    }
    columns["log_reviews"] = np.log1p(frame["n_reviews"].to_numpy(dtype=np.float32))
    columns.update({c: frame[c].to_numpy(dtype=np.float32) for c in _BOOKING_FLAGS})
    columns["is_weekend"] = (dates.dt.weekday >= 4).to_numpy(dtype=np.float32)
    angle = 2 * np.pi * day_of_year / 365.25
    columns["season_sin"] = np.sin(angle).astype(np.float32)
    columns["season_cos"] = np.cos(angle).astype(np.float32)
    columns["last_minute"] = np.exp(-frame["lead_time_days"].to_numpy(np.float32) / 7.0)
    columns.update(_one_hot(frame["neighbourhood"], NEIGHBOURHOODS, "neighbourhood"))
    columns.update(_one_hot(frame["room_type"], ROOM_TYPES, "room_type"))
    out = pd.DataFrame(columns, index=frame.index)[list(BOOKING_FEATURES)]
    out.insert(0, date_column, dates.dt.date.to_numpy())
    out.insert(0, key, frame[key].to_numpy())
    out[target] = frame[target].to_numpy(dtype=np.float32)
    return out.reset_index(drop=True)


FeatureBuilder = Callable[..., pd.DataFrame]
FEATURE_BUILDERS: dict[str, tuple[FeatureBuilder, tuple[str, ...]]] = {
    "bookings": (build_booking_features, BOOKING_FEATURES),
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


def build_features(builder: str, frame: pd.DataFrame, *, key: str, date_column: str,
                   target: str) -> pd.DataFrame:
    """Run feature builder `builder` over `frame`."""
    return _lookup(builder)[0](frame, key=key, date_column=date_column, target=target)
