"""The training loop: plain torch, resumable from a per-epoch checkpoint, no tracking code.

Callers observe progress through `on_epoch` (the entrypoint logs it to MLflow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml_platform.ml.models import TabularRegressor, build_regressor

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainParams:
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.0
    seed: int = 0


@dataclass
class TrainResult:
    model: TabularRegressor
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0


def _checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int,
                history: list[dict[str, float]]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
         "history": history, "rng": torch.get_rng_state()},
        tmp,
    )
    tmp.replace(path)  # atomic: a kill mid-write never leaves a torn checkpoint


def train_regressor(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    params: TrainParams,
    *,
    checkpoint: Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train a TabularRegressor with Adam on MSE in standard units.

    With `checkpoint`, state is saved after every epoch and an existing checkpoint is resumed,
    so a retried training continues where the killed one stopped.
    """
    if len(x_train) == 0 or len(x_valid) == 0:
        raise ValueError("training and validation sets must not be empty")
    torch.manual_seed(params.seed)
    xt, yt = torch.from_numpy(x_train).float(), torch.from_numpy(y_train).float()
    xv, yv = torch.from_numpy(x_valid).float(), torch.from_numpy(y_valid).float()
    model = build_regressor(xt, yt, params.hidden)
    opt = torch.optim.Adam(
        model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    history: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start, history = int(state["epoch"]), list(state["history"])

    loss_fn = nn.MSELoss()
    for epoch in range(start + 1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(xt))
        total = 0.0
        for i in range(0, len(xt), params.batch_size):
            idx = order[i : i + params.batch_size]
            target = (yt[idx] - model.y_mean) / model.y_std
            loss = loss_fn(model.normalised(xt[idx]), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            valid_mae = float((model(xv) - yv).abs().mean())
        row = {"train_loss": total / len(xt), "valid_mae": valid_mae}
        history.append(row)
        if checkpoint is not None:
            _checkpoint(checkpoint, model, opt, epoch, history)
        if on_epoch is not None:
            on_epoch(epoch, row)
    model.eval()
    return TrainResult(model=model, history=history, resumed_from_epoch=start)
