"""The synthetic generators by name (a dataset spec's `generator`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd

from ml_platform.simulation.bookings import generate_bookings
from ml_platform.simulation.engagement import generate_engagement

Generator = Callable[[dt.date, int], pd.DataFrame]
GENERATORS: dict[str, Generator] = {
    "bookings": generate_bookings,
    "engagement": generate_engagement,
}


def generate(generator: str, day: dt.date, rows: int) -> pd.DataFrame:
    """Rows of `generator` for `day`; unknown names fail with the known ones listed."""
    try:
        fn = GENERATORS[generator]
    except KeyError:
        raise ValueError(f"unknown generator {generator!r}; known: {sorted(GENERATORS)}") from None
    return fn(day, rows)


