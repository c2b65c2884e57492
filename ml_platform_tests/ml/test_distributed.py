"""Data-parallel training (`ml_platform.ml.distributed` + `train_network` under DDP) on two
CPU processes over gloo, the code path torchrun runs on GPUs: each rank's rows are exactly
`DistributedSampler`'s, two ranks end with identical weights that score like a single-process
run, only rank 0 writes checkpoints and sees `on_epoch`, and a checkpoint written by two ranks
resumes in one process. Real torch.distributed in real (spawned) processes meeting on a
loopback port; nothing is faked."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data.distributed import DistributedSampler

from ml_platform.ml import checkpoint as checkpoints
from ml_platform.ml.distributed import DistContext, distributed_session, shard_order, threads_per_process
from ml_platform.ml.metrics import regression_metrics
from ml_platform.ml.train import TrainParams, train_network
from ml_platform.tracking.server import free_port
from ml_platform_tests.data import booking_arrays

EPOCHS = 6
PARAMS = TrainParams(hidden=(64, 64), epochs=EPOCHS, batch_size=128, learning_rate=3e-3, seed=0)

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def arrays() -> Arrays:
    """Five days of 800 bookings, featurised and split as the pipeline does (odd train rows:
    the DDP run pads one row per epoch, as DistributedSampler does)."""
    out = booking_arrays(dt.date(2024, 6, 1), days=5, rows=800, seed=7)
    assert len(out[0]) % 2 == 1
    return out  # type: ignore[return-value]


def _test_mae(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return regression_metrics(y, model(torch.from_numpy(x)).numpy())["mae"]


def _ddp_worker(rank: int, world_size: int, port: int, arrays: Arrays, checkpoint: str,
                out: str) -> None:
    """One rank, started the way torchrun starts it: by environment variables."""
    os.environ.update({
        "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
        "ML_PLATFORM_DEVICE": "cpu",
    })
    x_train, y_train, x_valid, y_valid, x_test, y_test = arrays
    calls: list[int] = []
    with distributed_session() as (ctx, device):
        result = train_network(x_train, y_train, x_valid, y_valid, PARAMS,
                                 checkpoint_dir=Path(checkpoint), on_epoch=lambda e, _r: calls.append(e))
        threads = torch.get_num_threads()
    torch.save(result.model.state_dict(), Path(out) / f"model{rank}.pt")
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({
        "rank": ctx.rank, "device": result.device, "world_size": result.world_size,
        "history": result.history, "calls": calls, "samples": result.samples, "threads": threads,
        "test_mae": _test_mae(result.model, x_test, y_test), "backend_device": str(device),
    }))


@pytest.mark.parametrize(("n", "world_size"), [(10, 1), (10, 2), (11, 2), (10, 3), (2, 4)])
def test_shards_are_distributed_samplers_split(n: int, world_size: int) -> None:
    for epoch in (1, 2):
        shards = []
        for rank in range(world_size):
            sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, seed=5)
            sampler.set_epoch(epoch)
            shard = shard_order(n, epoch, 5, DistContext(rank=rank, world_size=world_size))
            assert shard.tolist() == list(sampler)
            shards.append(shard)
        assert len({len(s) for s in shards}) == 1  # equal batch counts: DDP needs them
        assert set(torch.cat(shards).tolist()) == set(range(n))


def test_shards_reshuffle_every_epoch_and_refuse_empty_sets() -> None:
    assert shard_order(100, 1, 5).tolist() != shard_order(100, 2, 5).tolist()
    assert shard_order(100, 1, 5).tolist() == shard_order(100, 1, 5).tolist()
    with pytest.raises(ValueError, match="empty"):
        shard_order(0, 1, 5)


@pytest.mark.integration  # real processes
def test_ddp_on_two_cpu_processes_matches_one_process(arrays: Arrays, tmp_path: Path) -> None:
    x_train, y_train, x_valid, y_valid, x_test, y_test = arrays
    single = train_network(x_train, y_train, x_valid, y_valid, PARAMS, device="cpu",
                             dist=DistContext())
    single_mae = _test_mae(single.model, x_test, y_test)

    checkpoint = tmp_path / "ckpt"
    mp.start_processes(_ddp_worker, args=(2, free_port(), arrays, str(checkpoint), str(tmp_path)),
                       nprocs=2, start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["device"] for r in ranks] == ["cpu", "cpu"]
    # Each rank runs its share of the machine's CPUs, not all of them (oversubscription).
    assert [r["threads"] for r in ranks] == [threads_per_process(2)] * 2
    # Only rank 0 reports progress; both see the same (all-reduced) history.
    assert ranks[0]["calls"] == list(range(1, EPOCHS + 1))
    assert ranks[1]["calls"] == []
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["samples"] == EPOCHS * (len(x_train) + 1)  # one padded row per epoch
    # Gradients were all-reduced: both ranks hold the very same weights.
    models = [torch.load(tmp_path / f"model{r}.pt", weights_only=True) for r in range(2)]
    for name, tensor in models[0].items():
        assert torch.equal(tensor, models[1][name]), name

    # Same model as one process. The ranks' k-th batches together are the single process's
    # k-th batch and DDP averages their gradients, so the runs differ only by float summation
    # order and one padded row per epoch: per-epoch metrics agree to ~0.1%. Tolerances of 2%
    # per epoch and 3% on test MAE leave room for other BLAS builds and thread counts, while
    # unsynchronised ranks (each fitting half the rows) or a wrong split miss the per-epoch
    # curve by far more.
    for got, want in zip(ranks[0]["history"], single.history, strict=True):
        assert got == pytest.approx(want, rel=0.02)
    assert ranks[0]["test_mae"] == pytest.approx(single_mae, rel=0.03)
    assert ranks[0]["test_mae"] < 12  # and it is a useful model (the promotion gate)

    # Rank 0 wrote the checkpoint; it is world-size agnostic and resumes in one process.
    assert sorted(checkpoint.iterdir())[-1] == checkpoints.path_for(checkpoint, EPOCHS)
    assert checkpoints.read(checkpoints.path_for(checkpoint, EPOCHS))["epoch"] == EPOCHS
    more = TrainParams(**{**PARAMS.__dict__, "epochs": EPOCHS + 1})
    resumed = train_network(x_train, y_train, x_valid, y_valid, more, checkpoint_dir=checkpoint,
                              device="cpu", dist=DistContext())
    assert resumed.resumed_from_epoch == EPOCHS
    assert resumed.history[:EPOCHS] == ranks[0]["history"]
    assert len(resumed.history) == EPOCHS + 1
