"""Unit tests of `ml_platform.ml.batches`: streaming the rows through DataLoader worker
processes gives the very batches of the device-resident path, so training reaches the very
same model (CPU: bit for bit); the rows stay resident unless they do not fit on the GPU."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from ml_platform.ml.batches import ResidentBatches, StreamedBatches, batch_sizes, fits_on_device
from ml_platform.ml.train import TrainParams, train_network
from ml_platform_tests.data import booking_arrays

PARAMS = TrainParams(hidden=(32, 32), epochs=3, batch_size=100, learning_rate=3e-3, seed=2)


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, ...]:
    return booking_arrays(dt.date(2024, 8, 1), days=3, rows=500, seed=5)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_are_the_resident_batches(workers: int) -> None:
    x, y = torch.randn(1003, 5), torch.randn(1003)
    order = torch.randperm(1003, generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    resident = list(ResidentBatches(x, y, cpu).epoch(order, batch_sizes(len(order), 128)))
    streamed = list(StreamedBatches(x, y, cpu, workers).epoch(order, batch_sizes(len(order), 128)))
    assert len(streamed) == len(resident) == 8  # the last one partial: 1003 = 7 x 128 + 107
    for (xs, ys), (xr, yr) in zip(streamed, resident, strict=True):
        assert torch.equal(xs, xr) and torch.equal(ys, yr)


def test_streamed_training_matches_resident_training(arrays: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_valid, y_valid, *_ = arrays
    runs = [train_network(x_train, y_train, x_valid, y_valid, PARAMS, device="cpu", stream=s)
            for s in (False, True)]
    assert runs[0].history == runs[1].history
    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(runs[1].model.state_dict()[name], tensor), name


def test_rows_stay_resident_unless_the_gpu_is_too_small() -> None:
    assert fits_on_device(1 << 40, torch.device("cpu"))  # already in host memory
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        assert fits_on_device(free // 4, torch.device("cuda"))
        assert not fits_on_device(free, torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_streamed_cuda_training_matches_resident(arrays: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_valid, y_valid, *_ = arrays
    runs = [train_network(x_train, y_train, x_valid, y_valid, PARAMS, device="cuda", stream=s)
            for s in (False, True)]
    for got, want in zip(runs[1].history, runs[0].history, strict=True):
        assert got == pytest.approx(want, rel=1e-3)  # same batches; kernels may differ in order
