"""The training loop: plain torch, resumable from a per-epoch checkpoint, no tracking code.

Runs on CUDA when present (bf16 autocast, data resident on the GPU), on the CPU otherwise
(fp32, reproducible: same seed, same metrics). In a torch.distributed process group (torchrun)
every rank trains on its shard of the rows and DistributedDataParallel all-reduces the
gradients; only rank 0 writes checkpoints and calls `on_epoch`. Callers observe progress
through `on_epoch` (the entrypoint logs it to MLflow).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml_platform.ml import checkpoint as checkpoints
from ml_platform.ml.batches import (
    Batch,
    ResidentBatches,
    StreamedBatches,
    fits_on_device,
    host_tensor,
    to_device,
)
from ml_platform.ml.distributed import (
    DistContext,
    all_reduce_sum,
    autocast,
    broadcast_object,
    current_context,
    loader_workers,
    select_device,
    shard_order,
)
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
    model: TabularRegressor  # on the CPU, in eval mode
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    device: str = "cpu"
    world_size: int = 1
    samples: int = 0  # training rows processed by all ranks in the epochs this call ran
    seconds: float = 0.0  # wall time of those epochs: batches, validation, checkpoints, callbacks

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


class _StandardUnits(nn.Module):
    """`model.normalised` as a forward: DDP synchronises gradients only through `forward`."""

    def __init__(self, model: TabularRegressor) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.normalised(x)


VALID_CHUNK = 1 << 16  # validation rows scored at once (streamed rows travel in chunks)


def _valid_mae(model: TabularRegressor, xv: torch.Tensor, yv: torch.Tensor,
               ctx: DistContext, device: torch.device) -> float:
    """MAE over the whole validation set, each rank scoring every `world_size`-th row (fp32)."""
    model.eval()
    xv, yv = xv[ctx.rank :: ctx.world_size], yv[ctx.rank :: ctx.world_size]
    stats = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.no_grad():
        for lo in range(0, len(xv), VALID_CHUNK):
            x, y = (t[lo : lo + VALID_CHUNK].to(device, non_blocking=True) for t in (xv, yv))
            err = (model(x) - y).abs()
            stats[0] += err.sum(dtype=torch.float64)
            stats[1] += err.numel()
    all_reduce_sum(stats, ctx)
    return float(stats[0] / stats[1])


Forward = Callable[[torch.Tensor], torch.Tensor]


def _train_epoch(net: Forward, opt: torch.optim.Optimizer, batches: Iterable[Batch], rows: int,
                 batch: int, device: torch.device) -> torch.Tensor:
    """One pass over this rank's `rows` in `batches`; returns [sum of loss x rows, rows] (fp64)."""
    losses: list[torch.Tensor] = []
    for x, target in batches:
        with autocast(device):
            pred = net(x)
        loss = nn.functional.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Kept on the device: a `.item()` per batch would stall the GPU on every step.
        losses.append(loss.detach())
    sizes = torch.full((len(losses),), float(batch), dtype=torch.float64, device=device)
    sizes[-1] = rows - batch * (len(losses) - 1)
    return torch.stack([(torch.stack(losses).double() * sizes).sum(), sizes.sum()])


def train_regressor(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    params: TrainParams,
    *,
    checkpoint_dir: Path | None = None,
    checkpoint_mirror: str | None = None,
    on_epoch: EpochCallback | None = None,
    device: torch.device | str | None = None,
    dist: DistContext | None = None,
    stream: bool | None = None,
) -> TrainResult:
    """Train a TabularRegressor with Adam on MSE in standard units.

    With `checkpoint_dir`, state is saved there after every epoch and the newest checkpoint
    there is resumed, so a retried training continues where the killed one stopped (rank 0
    reads and writes them; the other ranks receive its state). With `checkpoint_mirror` too,
    each checkpoint is also uploaded there and a newer one there is resumed first. `device`
    defaults to CUDA when present; `dist` to the initialised process group, if any. Every rank
    passes the full arrays (normalisation constants come from all training rows) and trains on
    its shard of them; `batch_size` is the global batch, split evenly across the ranks.
    `stream`: keep the rows in host memory and stream batches through DataLoader workers
    (default: only when they do not fit on the GPU; see `ml_platform.ml.batches`).
    """
    if len(x_train) == 0 or len(x_valid) == 0:
        raise ValueError("training and validation sets must not be empty")
    ctx = current_context() if dist is None else dist
    device = select_device(ctx) if device is None else torch.device(device)
    torch.manual_seed(params.seed)
    xt, yt = host_tensor(x_train), host_tensor(y_train)
    model = build_regressor(xt, yt, params.hidden)
    with torch.no_grad():
        target = (yt - model.y_mean) / model.y_std  # standard units, once

    history: list[dict[str, float]] = []
    start = 0
    state = (checkpoints.read_newest(checkpoint_dir, checkpoint_mirror)
             if ctx.is_main and checkpoint_dir else None)
    state = broadcast_object(state, ctx)
    if state is not None:
        model.load_state_dict(state["model"])
        torch.set_rng_state(state["rng"])
        start, history = int(state["epoch"]), list(state["history"])

    model.to(device)
    opt = torch.optim.Adam(
        model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay,
        fused=device.type == "cuda",  # one kernel per step instead of one per parameter
    )
    if state is not None:
        opt.load_state_dict(state["optimizer"])  # moves Adam's moments to `device`
    batch = max(1, params.batch_size // ctx.world_size)
    if stream is None:
        stream = not fits_on_device(xt.nbytes + target.nbytes, device)
    batches = (StreamedBatches(xt, target, device, loader_workers(ctx.local_world_size))
               if stream else ResidentBatches(xt, target, device))
    xv, yv = host_tensor(x_valid), host_tensor(y_valid)
    if not stream:
        xv, yv = to_device(xv, device), to_device(yv, device)
    net: Forward = model.normalised  # one process: no wrapper module to call through
    if ctx.is_distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers (normalisation constants) come from the same rows on every rank: synced once
        # at construction (with the parameters), not before every forward.
        net = DistributedDataParallel(
            _StandardUnits(model), device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False,
        )

    writer = (checkpoints.CheckpointWriter(checkpoint_dir, checkpoint_mirror)
              if checkpoint_dir and ctx.is_main else None)
    began, samples = time.perf_counter(), 0
    try:
        for epoch in range(start + 1, params.epochs + 1):
            model.train()
            order = shard_order(len(xt), epoch, params.seed, ctx)
            total = _train_epoch(net, opt, batches.epoch(order, batch), len(order), batch, device)
            all_reduce_sum(total, ctx)
            samples += int(total[1])
            row = {"train_loss": float(total[0] / total[1]),
                   "valid_mae": _valid_mae(model, xv, yv, ctx, device)}
            history.append(row)
            if writer is not None:
                writer.submit(epoch, {
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                    "history": history, "rng": torch.get_rng_state(),
                })
            if on_epoch is not None and ctx.is_main:
                on_epoch(epoch, row)
    except BaseException:
        if writer is not None:
            writer.close(raise_errors=False)  # the training's error is the one to report
        raise
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - began
    model.eval()
    return TrainResult(model=model.cpu(), history=history, resumed_from_epoch=start,
                       device=str(device), world_size=ctx.world_size, samples=samples,
                       seconds=seconds)
