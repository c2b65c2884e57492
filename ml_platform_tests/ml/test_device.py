"""Where training runs (`ml_platform.ml.distributed`'s device and CPU choices) and CPU
determinism of `train_network`: the device defaults to CUDA only when there is a GPU per local
process and can be forced; a pod's CPU quota (cgroup v1 and v2 files, written to a temporary
folder) caps the thread count; torchrun's environment parses into a rank context; two CPU runs
with one seed give identical metrics and weights. The CUDA test (bf16 autocast) runs only
where a GPU is present. Real torch; only the cgroup files are stand-ins."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ml_platform.ml.distributed import (
    DEVICE_ENV,
    DistContext,
    autocast,
    available_cpus,
    loader_workers,
    select_device,
    threads_per_process,
)
from ml_platform.ml.metrics import regression_metrics
from ml_platform.ml.train import TrainParams, train_network
from ml_platform_tests.data import booking_arrays


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, ...]:
    return booking_arrays(dt.date(2024, 7, 1), days=3, rows=600, seed=3)


def _params(seed: int) -> TrainParams:
    return TrainParams(hidden=(32, 32), epochs=3, batch_size=64, learning_rate=3e-3, seed=seed)


def test_same_seed_same_metrics_on_cpu(arrays: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_valid, y_valid, x_test, y_test = arrays
    runs = [train_network(x_train, y_train, x_valid, y_valid, _params(seed), device="cpu")
            for seed in (11, 11, 12)]
    assert runs[0].history == runs[1].history  # exactly: no tolerance
    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(tensor, runs[1].model.state_dict()[name]), name
    assert runs[0].history != runs[2].history  # the seed matters
    first = runs[0]
    assert first.device == "cpu" and first.world_size == 1
    assert first.samples == 3 * len(x_train)
    assert first.seconds > 0 and first.samples_per_second > 0
    with torch.no_grad():
        mae = regression_metrics(y_test, first.model(torch.from_numpy(x_test)).numpy())["mae"]
    assert np.isfinite(mae)


def test_device_defaults_to_cuda_only_with_a_gpu_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected
    many = DistContext(rank=0, world_size=64, local_rank=0, local_world_size=64)
    if torch.cuda.device_count() < 64:  # 64 local ranks cannot each have a GPU: gloo on CPUs
        assert select_device(many).type == "cpu"

    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert select_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match="use 'cpu' or 'cuda'"):
        select_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(RuntimeError, match="0 GPU"):
            select_device()


def test_autocast_is_off_on_cpu() -> None:
    x = torch.randn(4, 3)
    layer = torch.nn.Linear(3, 2)
    with autocast(torch.device("cpu")):
        assert layer(x).dtype == torch.float32


def test_context_from_torchrun_environment() -> None:
    assert DistContext.from_env({}) == DistContext()
    ctx = DistContext.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                                "LOCAL_WORLD_SIZE": "2"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size) == (3, 4, 1, 2)
    assert ctx.is_distributed and not ctx.is_main
    with pytest.raises(ValueError, match="inconsistent"):
        DistContext.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_cpu_count_respects_the_container_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == affinity  # no cgroup files: the affinity mask
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # limits.cpu: 1.5
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("5000 100000\n")  # 0.05 CPU still gets one thread
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == affinity  # cgroup v1, unlimited
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    assert available_cpus(tmp_path) == 1


def test_threads_leave_a_core_for_tracking_and_split_between_ranks() -> None:
    assert threads_per_process(1, cpus=1) == 1
    assert threads_per_process(1, cpus=2) == 1
    assert threads_per_process(1, cpus=16) == 15
    assert threads_per_process(2, cpus=16) == 7
    assert threads_per_process(4, cpus=2) == 1  # never zero


def test_loader_workers_use_the_cpus_beyond_the_training_loop() -> None:
    assert loader_workers(1, cpus=1) == 0  # batches gathered in the training process
    assert loader_workers(1, cpus=4) == 3
    assert loader_workers(8, cpus=64) == 7  # one GPU process per rank, its share of the node
    assert loader_workers(1, cpus=64) == 8  # capped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_with_bf16_autocast_matches_cpu(arrays: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_valid, y_valid, x_test, y_test = arrays
    maes = {}
    for device in ("cpu", "cuda"):
        result = train_network(x_train, y_train, x_valid, y_valid, _params(5), device=device)
        assert result.device.startswith(device)
        assert next(result.model.parameters()).device.type == "cpu"  # handed back on the CPU
        with torch.no_grad():
            pred = result.model(torch.from_numpy(x_test)).numpy()
        maes[device] = regression_metrics(y_test, pred)["mae"]
    # bf16 matmuls round to ~3 significant digits: close to, not equal to, the fp32 run.
    assert maes["cuda"] == pytest.approx(maes["cpu"], rel=0.15)
