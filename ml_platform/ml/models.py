"""Torch models. Each one normalises its own inputs and outputs, so an exported network is
self-contained: it takes feature values and returns the target in its own units (regression)
or a ranking score (ranking: higher ranks first)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TabularRegressor(nn.Module):
    """An MLP with input standardisation and output de-standardisation built in: a regressor,
    or (with y_mean 0, y_std 1) a ranking scorer."""

    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int],
        x_mean: torch.Tensor | None = None,
        x_std: torch.Tensor | None = None,
        y_mean: float = 0.0,
        y_std: float = 1.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        # Buffers: saved with the weights, moved with the module; typed for the type checker.
        self.x_mean: torch.Tensor
        self.x_std: torch.Tensor
        self.y_mean: torch.Tensor
        self.y_std: torch.Tensor
        self.register_buffer("x_mean", torch.zeros(n_features) if x_mean is None else x_mean)
        self.register_buffer("x_std", torch.ones(n_features) if x_std is None else x_std)
        self.register_buffer("y_mean", torch.tensor(float(y_mean)))
        self.register_buffer("y_std", torch.tensor(float(y_std)))

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction in standard units: what the training loss is computed on."""
        return self.net((x - self.x_mean) / self.x_std).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalised(x) * self.y_std + self.y_mean


def build_regressor(
    x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int]
) -> TabularRegressor:
    """A regressor whose normalisation constants come from the training data `x`, `y`."""
    std = x.std(dim=0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant columns pass through
    return TabularRegressor(
        x.shape[1], hidden, x.mean(dim=0), std, float(y.mean()), float(y.std()) or 1.0
    )


def build_scorer(x: torch.Tensor, hidden: Sequence[int]) -> TabularRegressor:
    """A ranking scorer: inputs standardised from the training data `x`, the output a raw score
    (a listwise loss is invariant to a score's shift, so there is nothing to de-standardise)."""
    model = build_regressor(x, torch.zeros(2), hidden)
    model.y_mean.fill_(0.0)
    model.y_std.fill_(1.0)
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
