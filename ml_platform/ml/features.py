"""Feature tables: a validated landed table in, the training path's table out.

A feature table keeps every landed column but the target under its own name (the raw input a
served model takes, see `ml.feature_transforms`), then the float32 features that
`ml.feature_transforms` computes from them, each named with the `FEATURE_PREFIX` (in model-input
order, listed by `feature_columns`), then the target. Layout: key, date, the other raw columns,
features, target. Vectorised: millions of rows take seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ml_platform.ml import feature_transforms
from ml_platform.ml.vocabulary import CATEGORIES, NEIGHBOURHOODS, ROOM_TYPES, SEGMENT_PREFERENCES, SEGMENTS

FEATURE_PREFIX = "f_"
"""Engineered feature columns are prefixed: raw columns keep their names (`bedrooms` is both)."""

# The vocabularies the transforms one-hot encode: the product's public category lists.
_VOCABULARIES: dict[str, dict[str, list[str]]] = {
    "bookings": {"neighbourhood": list(NEIGHBOURHOODS), "room_type": list(ROOM_TYPES)},
    "engagement": {"user_segment": list(SEGMENTS), "item_category": list(CATEGORIES)},
}
FEATURE_BUILDERS: tuple[str, ...] = tuple(_VOCABULARIES)
"""The feature builders a spec's `training.feature_builder` may name."""
# Columns that, with the date, name one query (a user's feed of a day) when the spec names no
# group column: the engagement builder's default.
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {"engagement": ("user_id",)}


def transform_config(builder: str, date_column: str) -> feature_transforms.Config:
    """The config of `builder`'s transform: what a served model saves to redo it."""
    try:
        vocabulary = _VOCABULARIES[builder]
    except KeyError:
        raise ValueError(
            f"unknown feature builder {builder!r}; known: {sorted(_VOCABULARIES)}"
        ) from None
    config: feature_transforms.Config = {"builder": builder, "date_column": date_column,
                                         "vocabulary": vocabulary}
    if builder == "engagement":
        config["interests"] = {s: list(p) for s, p in SEGMENT_PREFERENCES.items()}
    return config


def feature_columns(builder: str) -> tuple[str, ...]:
    """The feature columns `builder`'s table holds, in model-input order."""
    names = feature_transforms.feature_names(transform_config(builder, "date"))
    return tuple(FEATURE_PREFIX + n for n in names)


def input_columns(builder: str, date_column: str) -> dict[str, str]:
    """The raw columns `builder`'s transform reads, with the kind of value each holds."""
    return feature_transforms.inputs(transform_config(builder, date_column))


def build_features(builder: str, frame: pd.DataFrame, *, key: str, date_column: str,
                   target: str) -> pd.DataFrame:
    """Run feature builder `builder` over the landed rows `frame` (see the module's layout)."""
    config = transform_config(builder, date_column)
    matrix = feature_transforms.transform(frame, config)
    names = [FEATURE_PREFIX + n for n in feature_transforms.feature_names(config)]
    out = pd.DataFrame(matrix, columns=names, copy=False)  # one block: pandas copies nothing
    raw = [c for c in frame.columns if c not in (key, date_column, target)]
    for position, column in enumerate([key, date_column, *raw]):
        values = frame[column]
        if column == date_column and not ptypes.is_object_dtype(values):
            values = pd.to_datetime(values).dt.date  # the lake's Parquet gives Python dates
        out.insert(position, column, values.to_numpy() if column == date_column
                   else values.reset_index(drop=True))
    out[target] = frame[target].to_numpy(dtype=np.float32)
    return out


def group_columns(builder: str) -> tuple[str, ...]:
    """The default group columns of `builder`: () for pointwise builders, ("user_id",) for
    engagement. A spec's `training.group_column` overrides it (`ModelSpec.query_columns`)."""
    transform_config(builder, "date")
    return GROUP_COLUMNS.get(builder, ())


def query_columns(builder: str, date_column: str) -> tuple[str, ...]:
    """The columns whose joint value names one query of `builder`'s rows by default: the date
    and the group columns (engagement: one user's feed of one day)."""
    return (date_column, *group_columns(builder))


def query_ids(frame: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> np.ndarray:
    """One int64 id per row for its query (its joint value of `columns`): the `groups` of
    ranking metrics and of the listwise loss."""
    return frame.groupby(list(columns), sort=False, dropna=False).ngroup().to_numpy(np.int64)


def group_ids(features: pd.DataFrame, builder: str, *, date_column: str) -> np.ndarray:
    """`query_ids` over `builder`'s default query columns."""
    return query_ids(features, query_columns(builder, date_column))
