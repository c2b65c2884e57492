"""Deterministic synthetic engagement events: one day of feed impressions from (date, rows) alone.

A fixed universe of users (segment, activity level, private taste vector) and items (category,
quality, a rolling age, private embedding). Each day a sample of users each opens the feed once
and sees a list of `LIST_LENGTH` distinct items in slots 1..20, ordered by a weak legacy ranker
(quality plus noise). A user clicks an item with probability

    sigmoid(bias + segment-category affinity + quality + freshness   # learnable from features
            + taste·embedding + activity                             # latent: per-user / per-pair
            - position bias)                                         # slot 1 is seen most

so a model scoring segment, category, quality and age can rank a user's list well but not
perfectly. Dwell time is drawn for clicks only (longer for better-matched, better items).
"""

from __future__ import annotations

import datetime as dt
import zlib
from functools import cache

import numpy as np
import pandas as pd

from ml_platform.ml.vocabulary import CATEGORIES, SEGMENTS, affinity_codes

N_USERS = 1000
N_ITEMS = 3000
LIST_LENGTH = 20  # impressions per user per day: the slots 1..20 of one feed
AGE_CYCLE_DAYS = 60  # items are re-published on a rolling 60-day cycle: ages 0..59
MAX_DWELL_SECONDS = 1800.0
_EMBED_DIM = 8

# Click model weights (log-odds). A "click" is any engagement (open, like, share), so the
# click-through rate is high (~0.5). Measured NDCG@10 on a list: random order ~0.51, quality
# alone ~0.71, segment interest alone ~0.76, freshness alone ~0.68, all features (true
# weights) ~0.89: a model must combine them to pass a 0.78 gate.
_BIAS = -1.0
_PRIMARY, _SECONDARY = 5.0, 3.0
_QUALITY = 4.5
_FRESHNESS, _FRESHNESS_DAYS = 4.0, 10.0
_TASTE = 0.4
_POSITION = 0.2  # per log2(slot)


def _rng(*parts: object) -> np.random.Generator:
    # The recipe of simulation.bookings._rng: crc32 of the parts, stable across processes and Pythons.
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


@cache
def _users() -> dict[str, np.ndarray]:
    """The fixed universe of users (read-only arrays; cached: every day draws from it)."""
    rng = _rng("engagement", "users")
    out = {
        "segment": rng.choice(len(SEGMENTS), N_USERS, p=[0.25, 0.2, 0.25, 0.1, 0.2]),
        "activity": rng.lognormal(0.0, 0.6, N_USERS),
        "taste": rng.normal(0.0, 1.0, (N_USERS, _EMBED_DIM)) / np.sqrt(_EMBED_DIM),
    }
    for a in out.values():
        a.flags.writeable = False
    return out


@cache
def _items() -> dict[str, np.ndarray]:
    """The fixed universe of items (read-only arrays; cached)."""
    rng = _rng("engagement", "items")
    out = {
        "category": rng.integers(0, len(CATEGORIES), N_ITEMS),
        "quality": rng.beta(2.0, 2.0, N_ITEMS),
        "birth": rng.integers(0, AGE_CYCLE_DAYS, N_ITEMS),
        "embedding": rng.normal(0.0, 1.0, (N_ITEMS, _EMBED_DIM)),
    }
    for a in out.values():
        a.flags.writeable = False
    return out


def item_age_days(day: dt.date, item_index: np.ndarray) -> np.ndarray:
    """Age in days (0..AGE_CYCLE_DAYS-1) of items (0-based indices) on `day`."""
    return (day.toordinal() - _items()["birth"][item_index]) % AGE_CYCLE_DAYS


def generate_engagement(day: dt.date, rows: int) -> pd.DataFrame:
    """One day of feed impressions: `rows` rows, `LIST_LENGTH` per user (the last list is cut
    short when `rows` is not a multiple), sorted by user then position; `clicked` and
    `dwell_seconds` are the outcome."""
    users, items = _users(), _items()
    rng = _rng("engagement", day.isoformat())
    n_lists = -(-rows // LIST_LENGTH)
    if n_lists > N_USERS:
        raise ValueError(f"{rows} rows need {n_lists} users of {LIST_LENGTH} impressions; "
                         f"the universe has {N_USERS}")
    # Who opens the feed today: active users more often; nobody twice.
    weights = users["activity"] / users["activity"].sum()
    user_idx = np.sort(rng.choice(N_USERS, n_lists, replace=False, p=weights))
    # Candidates: LIST_LENGTH distinct items per list (top-k of random keys, vectorised).
    keys = rng.random((n_lists, N_ITEMS), dtype=np.float32)
    item_idx = np.argpartition(keys, LIST_LENGTH, axis=1)[:, :LIST_LENGTH]
    # The legacy ranker orders each list by quality plus noise: slot 1 = its best guess.
    legacy = items["quality"][item_idx] + rng.normal(0.0, 0.25, item_idx.shape)
    item_idx = np.take_along_axis(item_idx, np.argsort(-legacy, axis=1, kind="stable"), axis=1)
    position = np.broadcast_to(np.arange(1, LIST_LENGTH + 1), item_idx.shape)
    user_col = np.repeat(user_idx, LIST_LENGTH)

    # Flatten to rows and cut to `rows`.
    user_col, item_col, position = user_col[:rows], item_idx.ravel()[:rows], position.ravel()[:rows]
    segment, category = users["segment"][user_col], items["category"][item_col]
    quality = items["quality"][item_col]
    age = item_age_days(day, item_col)
    primary, secondary = affinity_codes(segment, category)
    taste = (users["taste"][user_col] * items["embedding"][item_col]).sum(axis=1)
    relevance = (_PRIMARY * primary + _SECONDARY * secondary + _QUALITY * (quality - 0.5)
                 + _FRESHNESS * np.exp(-age / _FRESHNESS_DAYS) + _TASTE * taste)
    logit = (_BIAS + relevance + 0.3 * np.log(users["activity"][user_col])
             - _POSITION * np.log2(position))
    clicked = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    dwell = np.exp(rng.normal(np.log(20.0) + 0.35 * relevance, 0.6, rows))
    dwell = np.where(clicked, np.round(np.minimum(dwell, MAX_DWELL_SECONDS), 1), 0.0)

    frame = pd.DataFrame(
        {
            "impression_id": [f"{day:%Y%m%d}-{u + 1:05d}-{p:02d}"
                              for u, p in zip(user_col, position, strict=True)],
            "event_date": pd.Series([day] * rows, dtype="object"),
            "user_id": (user_col + 1).astype(np.int64),
            "item_id": (item_col + 1).astype(np.int64),
            "user_segment": np.array(SEGMENTS)[segment],
            "item_category": np.array(CATEGORIES)[category],
            "item_quality": np.round(quality, 4),
            "item_age_days": age.astype(np.int64),
            "position": position.astype(np.int64),
            "clicked": clicked,
            "dwell_seconds": dwell.astype(np.float64),
        }
    )
    for col in ("impression_id", "user_segment", "item_category"):
        frame[col] = frame[col].astype("string")
    return frame
