"""Damage for drills and tests of the validation checks: a landed day gone wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd

CORRUPTIONS = ("missing_column", "negative_values", "null_flood", "duplicate_keys", "wrong_dtype")


def corrupt(frame: pd.DataFrame, kind: str, *, key: str, target: str) -> pd.DataFrame:
    """A damaged copy of `frame`, for drills and tests of the validation checks."""
    bad = frame.copy()
    if kind == "missing_column":
        return bad.drop(columns=[target])
    if kind == "negative_values":
        bad.loc[bad.index[: max(1, len(bad) // 10)], target] = -abs(bad[target].iloc[0])
    elif kind == "null_flood":
        bad.loc[bad.index[: len(bad) // 2], target] = np.nan
    elif kind == "duplicate_keys":
        bad.loc[bad.index[1 : 1 + max(1, len(bad) // 20)], key] = bad[key].iloc[0]
    elif kind == "wrong_dtype":
        bad[target] = bad[target].astype(str)
    else:
        raise ValueError(f"unknown corruption {kind!r}; known: {CORRUPTIONS}")
    return bad
