"""Frozen train/valid/test snapshots and content hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

SPLIT_COLUMN = "split"


def content_hash(frame: pd.DataFrame) -> str:
    """A sha256 over the values, column names and order of `frame` (not its file encoding)."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def assign_splits(keys: pd.Series, *, valid_fraction: float, test_fraction: float,
                  seed: int) -> np.ndarray:
    """`train`/`valid`/`test` per row from a hash of its key: a row never changes split
    when other days are added, so the test set of an old model stays its test set."""
    buckets = pd.util.hash_pandas_object(keys.astype(str), index=False, hash_key=f"{seed:016d}")
    u = (buckets.to_numpy() % 10_000) / 10_000.0
    return np.where(u < test_fraction, "test",
                    np.where(u < test_fraction + valid_fraction, "valid", "train"))


def make_training_set(features: pd.DataFrame, *, key: str, valid_fraction: float,
                      test_fraction: float, seed: int,
                      split_by: Sequence[str] = ()) -> pd.DataFrame:
    """`features` sorted by key with a split column: the frozen snapshot a model trains on.

    The split is hashed from `key`, or, given `split_by` (e.g. `features.query_columns`: date
    and user for ranking), from those columns' joint value, so every row of one query lands in
    the same split and a held-out query is whole."""
    frame = features.sort_values(key, kind="stable").reset_index(drop=True)
    if isinstance(split_by, str):
        split_by = (split_by,)
    if split_by:
        split_key = frame[split_by[0]].astype(str)
        for col in split_by[1:]:
            split_key = split_key + "|" + frame[col].astype(str)
    else:
        split_key = frame[key]
    frame[SPLIT_COLUMN] = assign_splits(
        split_key, valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed
    )
    counts = frame[SPLIT_COLUMN].value_counts()
    empty = [s for s in ("train", "valid", "test") if counts.get(s, 0) == 0]
    if empty:
        raise ValueError(f"training set of {len(frame)} rows has empty split(s) {empty}")
    return frame
