"""Unit tests of `ml_platform.ml.train`, `ml.models` and `ml.metrics`: a small MLP learns the
synthetic bookings price (a mean predictor does not), per-epoch checkpoints resume where a
killed run stopped, the exported model carries its own normalisation, and the regression
metrics give known values. Real torch on CPU over a few thousand generated rows, a few
epochs; nothing is faked. Every `torch.load` uses `weights_only=True`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch

from ml_platform.compute.entrypoint import Splits
from ml_platform.ml import checkpoint as checkpoints
from ml_platform.ml.metrics import metrics_for, regression_metrics
from ml_platform.ml.models import TabularRegressor, build_regressor, parameter_count
from ml_platform.ml.train import TrainParams, train_network, validation_metric_names
from ml_platform_tests.data import booking_arrays

TARGET = "nightly_price"
HIDDEN = (64, 64)


@pytest.fixture(scope="module")
def splits() -> Splits:
    """Five days of 800 bookings, featurised and split the way the pipeline does."""
    return Splits(*booking_arrays(dt.date(2024, 6, 1), days=5, rows=800, seed=7))


def _params(epochs: int) -> TrainParams:
    return TrainParams(hidden=HIDDEN, epochs=epochs, batch_size=128, learning_rate=3e-3, seed=0)


def _predict(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_mlp_beats_the_gate_and_the_mean_predictor_does_not(splits: Splits) -> None:
    result = train_network(splits.x_train, splits.y_train, splits.x_valid, splits.y_valid,
                             _params(6))
    model_mae = regression_metrics(splits.y_test, _predict(result.model, splits.x_test))["mae"]
    mean = np.full_like(splits.y_test, splits.y_train.mean())
    mean_mae = regression_metrics(splits.y_test, mean)["mae"]
    assert model_mae < 12, model_mae
    assert mean_mae >= 12, mean_mae
    assert len(result.history) == 6
    assert result.resumed_from_epoch == 0
    assert result.history[-1]["valid_mae"] < result.history[0]["valid_mae"]
    assert not result.model.training  # handed back in eval mode


def test_checkpoint_resume_continues_where_it_stopped(splits: Splits, tmp_path: Path) -> None:
    x_train, y_train = splits.x_train[:1000], splits.y_train[:1000]
    ckpt = tmp_path / "ckpt"
    seen: list[int] = []

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        assert set(row) == {"train_loss", *validation_metric_names("regression")}
        seen.append(epoch)

    first = train_network(x_train, y_train, splits.x_valid, splits.y_valid, _params(2),
                            checkpoint_dir=ckpt, on_epoch=on_epoch)
    assert seen == [1, 2]
    assert first.resumed_from_epoch == 0
    assert checkpoints.latest(ckpt) == checkpoints.path_for(ckpt, 2)
    assert checkpoints.read(checkpoints.path_for(ckpt, 2))["epoch"] == 2

    seen.clear()
    resumed = train_network(x_train, y_train, splits.x_valid, splits.y_valid, _params(4),
                              checkpoint_dir=ckpt, on_epoch=on_epoch)
    assert resumed.resumed_from_epoch == 2
    assert len(resumed.history) == 4
    assert resumed.history[:2] == first.history
    assert seen == [3, 4]
    # The two newest checkpoints are kept, and no temporary file is left behind.
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch-000003.pt", "epoch-000004.pt"]
    state = checkpoints.read(ckpt / "epoch-000004.pt")
    assert state["epoch"] == 4
    assert len(state["history"]) == 4

    # The interrupted-then-resumed run ends where an uninterrupted one does.
    straight = train_network(x_train, y_train, splits.x_valid, splits.y_valid, _params(4))
    np.testing.assert_allclose(
        [h["valid_mae"] for h in resumed.history], [h["valid_mae"] for h in straight.history],
        rtol=1e-5,
    )
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, msg=name)


def test_finished_checkpoint_trains_no_further(splits: Splits, tmp_path: Path) -> None:
    x_train, y_train = splits.x_train[:300], splits.y_train[:300]
    ckpt = tmp_path / "ckpt"
    train_network(x_train, y_train, splits.x_valid, splits.y_valid, _params(1), checkpoint_dir=ckpt)
    calls: list[int] = []
    again = train_network(x_train, y_train, splits.x_valid, splits.y_valid, _params(1),
                            checkpoint_dir=ckpt, on_epoch=lambda e, _row: calls.append(e))
    assert calls == []
    assert again.resumed_from_epoch == 1
    assert len(again.history) == 1


def test_empty_sets_are_refused(splits: Splits) -> None:
    empty_x = np.empty((0, splits.x_train.shape[1]), np.float32)
    empty_y = np.empty(0, np.float32)
    with pytest.raises(ValueError, match="must not be empty"):
        train_network(empty_x, empty_y, splits.x_valid, splits.y_valid, _params(1))
    with pytest.raises(ValueError, match="must not be empty"):
        train_network(splits.x_train, splits.y_train, empty_x, empty_y, _params(1))


def test_model_is_self_contained(splits: Splits, tmp_path: Path) -> None:
    result = train_network(splits.x_train[:500], splits.y_train[:500], splits.x_valid,
                             splits.y_valid, _params(1))
    state = result.model.state_dict()
    assert {"x_mean", "x_std", "y_mean", "y_std"} <= set(state)
    np.testing.assert_allclose(state["x_mean"].numpy(), splits.x_train[:500].mean(axis=0),
                               rtol=1e-4, atol=1e-5)
    assert float(state["y_mean"]) == pytest.approx(float(splits.y_train[:500].mean()), rel=1e-5)

    torch.save(state, tmp_path / "model.pt")
    fresh = TabularRegressor(splits.x_train.shape[1], HIDDEN)
    fresh.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    fresh.eval()
    np.testing.assert_allclose(_predict(fresh, splits.x_test), _predict(result.model, splits.x_test),
                               rtol=1e-5, atol=1e-4)
    # Raw feature values in, dollars out: predictions sit on the target's scale.
    assert _predict(fresh, splits.x_test).mean() == pytest.approx(splits.y_test.mean(), rel=0.5)


def test_build_regressor_passes_constant_columns_through() -> None:
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    y = torch.tensor([10.0, 20.0, 30.0])
    model = build_regressor(x, y, hidden=(4,))
    torch.testing.assert_close(model.x_mean, torch.tensor([3.0, 5.0]))
    torch.testing.assert_close(model.x_std, torch.tensor([2.0, 1.0]))
    assert float(model.y_mean) == pytest.approx(20.0)
    assert float(model.y_std) == pytest.approx(10.0)
    assert torch.isfinite(model(x)).all()
    assert parameter_count(model) == (2 * 4 + 4) + (4 * 1 + 1)


def test_regression_metrics_known_values() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 8.0]))
    assert m == pytest.approx({"mae": 1.0, "rmse": 2.0, "r2": 1.0 - 16.0 / 5.0})
    perfect = regression_metrics(np.array([2.0, 4.0]), np.array([[2.0], [4.0]]))
    assert perfect == pytest.approx({"mae": 0.0, "rmse": 0.0, "r2": 1.0})
    constant = regression_metrics(np.array([3.0, 3.0]), np.array([2.0, 4.0]))
    assert constant == pytest.approx({"mae": 1.0, "rmse": 1.0, "r2": 0.0})
    assert metrics_for("regression", np.array([1.0]), np.array([2.0]))["mae"] == 1.0


def test_regression_metrics_refuse_empty_input_and_unknown_task() -> None:
    with pytest.raises(ValueError, match="empty"):
        regression_metrics(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="no metrics for task 'classification'"):
        metrics_for("classification", np.array([1.0]), np.array([1.0]))
