"""Permutation importance: how much a model's metric worsens when one input column is shuffled.

Computed on raw input columns (`bedrooms`, `neighbourhood`), not on engineered features, so it
reads in the dataset's own terms: shuffling `neighbourhood` moves all eight one-hot features
together, and `booking_date` its calendar and season features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd


def permutation_importance(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame,
                           columns: Sequence[str], score: Callable[[np.ndarray], float], *,
                           metric: str, higher_is_better: bool, repeats: int = 3,
                           seed: int = 0) -> pd.DataFrame:
    """One row per column of `columns`, most important first: `importance` is the mean over
    `repeats` shuffles of how much worse `score(predict(rows))` gets (in the metric's units;
    around 0 for a column the model ignores), `std` its spread, `baseline` the unshuffled
    score."""
    if rows.empty:
        raise ValueError("permutation importance needs at least one row")
    rng = np.random.default_rng(seed)
    baseline = score(predict(rows))
    out = []
    for column in columns:
        drops = []
        for _ in range(repeats):
            shuffled = rows.copy()
            shuffled[column] = rows[column].to_numpy()[rng.permutation(len(rows))]
            permuted = score(predict(shuffled))
            drops.append(baseline - permuted if higher_is_better else permuted - baseline)
        out.append({"column": column, "importance": float(np.mean(drops)),
                    "std": float(np.std(drops)), "metric": metric, "baseline": baseline})
    table = pd.DataFrame(out)
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
