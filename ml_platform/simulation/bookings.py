"""Deterministic synthetic bookings: one day of landed rows from (date, rows) alone."""

from __future__ import annotations

import datetime as dt
import zlib

import numpy as np
import pandas as pd

from ml_platform.ml.vocabulary import NEIGHBOURHOODS, ROOM_TYPES

_NEIGHBOURHOOD_MULT = np.array([1.6, 1.45, 1.3, 1.1, 1.0, 0.9, 0.8, 0.7])
_ROOM_MULT = np.array([1.0, 0.55, 0.35])
N_LISTINGS = 1500


def _rng(*parts: object) -> np.random.Generator:
    # crc32 of the parts, not hash(): stable across processes and Python versions.
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def _listings() -> pd.DataFrame:
    """The fixed universe of listings every booking day draws from."""
    rng = _rng("listings")
    n = N_LISTINGS
    bedrooms = rng.integers(0, 6, n)
    return pd.DataFrame(
        {
            "listing_id": np.arange(1, n + 1, dtype=np.int64),
            "neighbourhood": np.array(NEIGHBOURHOODS)[rng.integers(0, len(NEIGHBOURHOODS), n)],
            "room_type": np.array(ROOM_TYPES)[rng.choice(3, n, p=[0.6, 0.32, 0.08])],
            "bedrooms": bedrooms.astype(np.int64),
            "accommodates": (np.maximum(bedrooms, 1) * 2 + rng.integers(0, 2, n)).astype(np.int64),
            "review_score": np.round(rng.uniform(3.0, 5.0, n), 2),
            "n_reviews": rng.poisson(40, n).astype(np.int64),
            "has_pool": rng.random(n) < 0.15,
            "has_parking": rng.random(n) < 0.4,
            "has_kitchen": rng.random(n) < 0.7,
        }
    )


def listing_base_price(listings: pd.DataFrame) -> np.ndarray:
    """The noise-free, season-free nightly price of each listing: the learnable signal."""
    nb = _NEIGHBOURHOOD_MULT[pd.Categorical(listings["neighbourhood"], NEIGHBOURHOODS).codes]
    room = _ROOM_MULT[pd.Categorical(listings["room_type"], ROOM_TYPES).codes]
    quality = 0.85 + 0.08 * (listings["review_score"].to_numpy() - 3.0)
    size = 1.0 + 0.3 * listings["bedrooms"].to_numpy()
    extras = 25.0 * listings["has_pool"].to_numpy() + 8.0 * listings["has_parking"].to_numpy()
    return 55.0 * nb * room * quality * size + extras


def generate_bookings(day: dt.date, rows: int) -> pd.DataFrame:
    """One day of bookings: listing attributes, stay details and the nightly price paid."""
    listings = _listings()
    rng = _rng("bookings", day.isoformat())
    picked = listings.iloc[rng.integers(0, len(listings), rows)].reset_index(drop=True)
    lead_time = rng.integers(0, 120, rows)
    season = 1.0 + 0.15 * np.sin(2 * np.pi * day.timetuple().tm_yday / 365.25)
    weekend = 1.12 if day.weekday() >= 4 else 1.0
    last_minute = 1.0 + 0.08 * np.exp(-lead_time / 7.0)
    price = listing_base_price(picked) * season * weekend * last_minute + rng.normal(0, 5.0, rows)
    frame = pd.DataFrame(
        {
            "booking_id": [f"{day:%Y%m%d}-{i:06d}" for i in range(rows)],
            "booking_date": pd.Series([day] * rows, dtype="object"),
            **{c: picked[c] for c in picked.columns},
            "nights": rng.integers(1, 15, rows).astype(np.int64),
            "guests": np.minimum(picked["accommodates"], rng.integers(1, 7, rows)).astype(np.int64),
            "lead_time_days": lead_time.astype(np.int64),
            "nightly_price": np.round(np.maximum(price, 10.0), 2),
        }
    )
    frame["booking_id"] = frame["booking_id"].astype("string")
    for col in ("neighbourhood", "room_type"):
        frame[col] = frame[col].astype("string")
    return frame
