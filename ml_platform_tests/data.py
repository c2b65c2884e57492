"""Small real training data for tests: generated bookings, featurised and split as the
pipeline does it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ml_platform.ml.features import build_features, feature_columns
from ml_platform.ml.training_set import SPLIT_COLUMN, make_training_set
from ml_platform.simulation.bookings import generate_bookings

TARGET = "nightly_price"


def booking_training_set(start: dt.date, days: int, rows: int, seed: int) -> pd.DataFrame:
    """`days` days of `rows` bookings from `start`, as a frozen training set."""
    raw = pd.concat([generate_bookings(start + dt.timedelta(days=i), rows) for i in range(days)],
                    ignore_index=True)
    feats = build_features("bookings", raw, key="booking_id", date_column="booking_date",
                           target=TARGET)
    return make_training_set(feats, key="booking_id", valid_fraction=0.15, test_fraction=0.15,
                             seed=seed)


def booking_arrays(start: dt.date, days: int, rows: int, seed: int) -> tuple[np.ndarray, ...]:
    """x/y of train, valid and test (six float32 arrays) of `booking_training_set`."""
    ts = booking_training_set(start, days, rows, seed)
    cols = list(feature_columns("bookings"))
    out: list[np.ndarray] = []
    for name in ("train", "valid", "test"):
        part = ts[ts[SPLIT_COLUMN] == name]
        out += [part[cols].to_numpy(np.float32), part[TARGET].to_numpy(np.float32)]
    return tuple(out)
