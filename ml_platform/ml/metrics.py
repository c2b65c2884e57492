"""Evaluation metrics over numpy arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² of `y_pred` against `y_true`."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(y_true.shape)
    if y_true.size == 0:
        raise ValueError("cannot compute metrics on an empty set")
    err = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot else 0.0,
    }


def _group_index(y_true: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    if groups is None:
        return np.zeros(y_true.size, dtype=np.int64)
    gid = pd.factorize(np.asarray(groups).ravel())[0].astype(np.int64)
    if gid.size != y_true.size:
        raise ValueError(f"{gid.size} group keys for {y_true.size} labels")
    return gid


def _checked(y_true: np.ndarray, y_score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    if y_true.size == 0:
        raise ValueError("cannot compute metrics on an empty set")
    if y_score.shape != y_true.shape:
        raise ValueError(f"{y_score.size} scores for {y_true.size} labels")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if (y_true < 0).any():
        raise ValueError("relevance labels must be non-negative")
    return y_true, y_score


def _top_k_gain(gid: np.ndarray, y_gain: np.ndarray, y_score: np.ndarray, k: int,
                discounted: bool) -> np.ndarray:
    """Per group, the sum of `y_gain` over its top `k` rows by descending `y_score`, each times
    1/log2(rank + 2) when `discounted`. Tied scores share their gains evenly (scikit-learn's tie
    averaging), so a constant scorer gets a random ranking's expected value, not the input
    order's. One lexsort: ~1M rows take well under a second."""
    n_groups = int(gid.max()) + 1
    order = np.lexsort((-y_score, gid))
    s, g = y_score[order], gid[order]
    block = np.cumsum(np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])]) - 1
    gains = y_gain[order]
    tied = (np.bincount(block, weights=gains) / np.bincount(block))[block]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size]))
    weight = 1.0 / np.log2(rank + 2.0) if discounted else np.ones(g.size)
    return np.bincount(g, weights=tied * np.where(rank < k, weight, 0.0), minlength=n_groups)


def ndcg_at_k(y_true: np.ndarray, y_score: np.ndarray, groups: np.ndarray | None = None,
              k: int = 10) -> float:
    """Mean NDCG@k over the groups (queries) that hold at least one relevant item.

    `y_true` holds non-negative relevance (binary clicks or graded), used as linear gain, the
    convention of scikit-learn's `ndcg_score`; `y_score` any real scores, higher ranked first;
    `groups` one key per row (any hashable dtype, rows of a group need not be adjacent; None:
    one group). Tied scores share their gains evenly. Groups without a relevant item have no
    ideal DCG and are left out; NaN when no group is left.
    """
    y_true, y_score = _checked(y_true, y_score, k)
    gid = _group_index(y_true, groups)
    actual = _top_k_gain(gid, y_true, y_score, k, discounted=True)
    ideal = _top_k_gain(gid, y_true, y_true, k, discounted=True)
    has_relevant = ideal > 0
    if not has_relevant.any():
        return float("nan")
    return float((actual[has_relevant] / ideal[has_relevant]).mean())


def precision_at_k(y_true: np.ndarray, y_score: np.ndarray, groups: np.ndarray | None = None,
                   k: int = 10) -> float:
    """Mean over the groups (queries) of the share of relevant items (relevance > 0) among
    the top `k` by score: relevant in the top k / k (a group shorter than k can hold at most
    its length). Ties are averaged as in `ndcg_at_k`."""
    y_true, y_score = _checked(y_true, y_score, k)
    gid = _group_index(y_true, groups)
    hits = _top_k_gain(gid, (y_true > 0).astype(np.float64), y_score, k, discounted=False)
    return float((hits / k).mean())


def listwise_softmax_loss(y_true: np.ndarray, y_score: np.ndarray,
                          groups: np.ndarray | None = None) -> float:
    """The listwise softmax cross-entropy the ranking model trains on (`ml.train`), in numpy:
    per group with a relevant item, -sum(p_i * log softmax(score)_i) where p is the group's
    relevance normalised to sum to 1; averaged over those groups. NaN when none has one."""
    y_true, y_score = _checked(y_true, y_score, 1)
    gid = _group_index(y_true, groups)
    n_groups = int(gid.max()) + 1
    top = np.full(n_groups, -np.inf)
    np.maximum.at(top, gid, y_score)
    shifted = y_score - top[gid]
    log_norm = np.log(np.bincount(gid, weights=np.exp(shifted), minlength=n_groups))
    mass = np.bincount(gid, weights=y_true, minlength=n_groups)
    has_relevant = mass > 0
    if not has_relevant.any():
        return float("nan")
    target = y_true / np.where(mass > 0, mass, 1.0)[gid]
    per_group = -np.bincount(gid, weights=target * (shifted - log_norm[gid]), minlength=n_groups)
    return float(per_group[has_relevant].mean())


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC of scores for binary labels (> 0 is positive), ties counted half; NaN when only
    one class is present."""
    pos = np.asarray(y_true, dtype=np.float64).ravel() > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = pd.Series(np.asarray(y_score, dtype=np.float64).ravel()).rank().to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ranking_metrics(y_true: np.ndarray, y_score: np.ndarray,
                    groups: np.ndarray | None = None) -> dict[str, float]:
    """NDCG@10 and precision@10 per group (see `ndcg_at_k`) and, when both classes are present, the pooled AUC
    of the scores against relevance > 0."""
    out = {"ndcg_at_10": ndcg_at_k(y_true, y_score, groups, k=10),
           "precision_at_10": precision_at_k(y_true, y_score, groups, k=10)}
    area = auc(y_true, y_score)
    if not np.isnan(area):
        out["auc"] = area
    return out


def metrics_for(task: str, y_true: np.ndarray, y_pred: np.ndarray,
                groups: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of `task` (as named in a ModelSpec). `groups` (ranking only): one query key
    per row, e.g. `features.group_ids` (user-day); None treats all rows as one list."""
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    if task == "ranking":
        return ranking_metrics(y_true, y_pred, groups)
    raise ValueError(f"no metrics for task {task!r}")
