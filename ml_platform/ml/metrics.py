"""Evaluation metrics over numpy arrays."""

from __future__ import annotations

import numpy as np


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


def metrics_for(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metrics of `task` (as named in a ModelSpec)."""
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    raise ValueError(f"no metrics for task {task!r}")
