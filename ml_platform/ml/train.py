"""The training loop: plain torch, resumable from a per-epoch checkpoint, no tracking code.

Regression trains on squared error; ranking on LambdaRank (or a listwise softmax
cross-entropy) over each query (a user's feed of a day) with batches of whole queries, or
pointwise on squared error for comparison. Every epoch reports the training loss and the task's
validation metrics.

Runs on CUDA when present (bf16 autocast, data resident on the GPU), on the CPU otherwise
(fp32, reproducible: same seed, same metrics). In a torch.distributed process group (torchrun)
every rank trains on its shard of the rows and DistributedDataParallel all-reduces the
gradients; only rank 0 writes checkpoints and calls `on_epoch`. Callers observe progress
through `on_epoch` (the entrypoint logs it to MLflow).
"""

from __future__ import annotations

import functools
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
    batch_sizes,
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
from ml_platform.ml.metrics import ndcg_at_k, precision_at_k
from ml_platform.ml.models import TabularRegressor, build_regressor, build_scorer

EpochCallback = Callable[[int, dict[str, float]], None]


LOSSES = ("mse", "lambdarank", "listwise_softmax")
"""`mse`: squared error in standard units (regression; for ranking, pointwise on the label).
Ranking only, on batches that hold whole queries: `lambdarank`, a pairwise logistic loss over
each query's pairs of items with different relevance, each pair weighted by how much swapping
the two would change the query's NDCG@10 at the current scores (LambdaRank's |ΔNDCG|);
`listwise_softmax`, softmax cross-entropy over each query with the relevance as target
distribution (ListNet)."""
QUERY_LOSSES = ("lambdarank", "listwise_softmax")
LAMBDA_K = 10  # lambdarank weighs pairs by their effect on NDCG at this cut-off


def default_loss(task: str) -> str:
    """The loss a task trains on unless told otherwise: lambdarank for ranking (on the shipped
    feed data it beats MSE and listwise softmax on test NDCG@10, see docs/benchmarks.md)."""
    return "lambdarank" if task == "ranking" else "mse"


@dataclass(frozen=True)
class TrainParams:
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.0
    seed: int = 0
    task: str = "regression"  # "ranking": ranking metrics on the validation rows' queries
    loss: str = "mse"  # one of LOSSES

    def __post_init__(self) -> None:
        if self.task not in ("regression", "ranking"):
            raise ValueError(f"unknown task {self.task!r}: 'regression' or 'ranking'")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {LOSSES}")
        if self.loss in QUERY_LOSSES and self.task != "ranking":
            raise ValueError(f"loss {self.loss!r} needs task 'ranking'")


def validation_metric_names(task: str) -> tuple[str, ...]:
    """The metrics `train_network` reports for every epoch, besides `train_loss`."""
    if task == "ranking":
        return ("valid_ndcg_at_10", "valid_precision_at_10", "valid_loss")
    return ("valid_mae", "valid_rmse", "valid_loss")


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


def _regression_validation(model: TabularRegressor, xv: torch.Tensor, yv: torch.Tensor,
                           ctx: DistContext, device: torch.device) -> dict[str, float]:
    """MAE, RMSE (target units) and the MSE loss (standard units) over the whole validation
    set, each rank scoring every `world_size`-th row (fp32); one host sync."""
    model.eval()
    xv, yv = xv[ctx.rank :: ctx.world_size], yv[ctx.rank :: ctx.world_size]
    stats = torch.zeros(3, dtype=torch.float64, device=device)
    with torch.no_grad():
        for lo in range(0, len(xv), VALID_CHUNK):
            x, y = (t[lo : lo + VALID_CHUNK].to(device, non_blocking=True) for t in (xv, yv))
            err = model(x) - y
            stats[0] += err.abs().sum(dtype=torch.float64)
            stats[1] += err.square().sum(dtype=torch.float64)
            stats[2] += err.numel()
    all_reduce_sum(stats, ctx)
    mae, sse, n = stats.tolist()
    std = float(model.y_std)
    return {"valid_mae": mae / n, "valid_rmse": (sse / n) ** 0.5,
            "valid_loss": sse / n / (std * std)}


def _query_loss(loss: str, scores: np.ndarray, relevance: np.ndarray, queries: _Queries) -> float:
    """A query loss over whole queries, a chunk of them at a time, averaged over the queries
    that hold a relevant row (as each batch's loss is)."""
    total, weight = 0.0, 0
    longest = int(queries.lengths.max())
    per_chunk = max(1, VALID_CHUNK // longest)
    loss_fn = loss_function(loss, longest, per_chunk)
    flags = queries.first_row_flags(len(scores))
    for lo in range(0, len(queries.lengths), per_chunk):
        chunk = np.arange(lo, min(lo + per_chunk, len(queries.lengths)))
        order, _ = queries.epoch(chunk, len(chunk))
        rows = order.numpy()
        target = torch.from_numpy(np.stack([relevance[rows], flags[rows]], axis=1))
        n_relevant = int(np.count_nonzero(np.add.reduceat(relevance[rows] > 0,
                                                          np.flatnonzero(flags[rows]))))
        total += float(loss_fn(torch.from_numpy(scores[rows]), target)) * n_relevant
        weight += n_relevant
    return total / weight if weight else float("nan")


def _ranking_validation(model: TabularRegressor, xv: torch.Tensor, yv: np.ndarray,
                        groups: np.ndarray, loss: str, device: torch.device) -> dict[str, float]:
    """NDCG@10, precision@10 and the training loss over the validation queries. Every rank
    scores all of them (queries stay whole; validation sets of ranking models are small)."""
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(xv[lo : lo + VALID_CHUNK].to(device, non_blocking=True))
                            for lo in range(0, len(xv), VALID_CHUNK)]).float().cpu().numpy()
        if loss in QUERY_LOSSES:
            valid_loss = _query_loss(loss, scores, yv, _Queries.of(groups))
        else:
            std = float(model.y_std)
            valid_loss = float(np.mean(np.square(scores - yv))) / (std * std)
    return {"valid_ndcg_at_10": ndcg_at_k(yv, scores, groups, k=10),
            "valid_precision_at_10": precision_at_k(yv, scores, groups, k=10),
            "valid_loss": valid_loss}


def listwise_softmax(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over each query of a batch, averaged over the queries that hold a
    relevant row. `target[:, 0]` is the relevance, `target[:, 1]` is 1 on the first row of each
    query (a query's rows are contiguous). No host sync: segments are bounded by the rows."""
    relevance, first = target[:, 0], target[:, 1]
    segment = torch.cumsum(first, 0).long() - 1
    n = scores.shape[0]
    top = torch.full((n,), -torch.inf, device=scores.device).scatter_reduce(
        0, segment, scores.detach(), "amax")
    shifted = scores - top[segment]  # softmax is shift-invariant: this only keeps exp finite
    norm = torch.zeros(n, device=scores.device).index_add(0, segment, shifted.exp())
    log_p = shifted - norm.clamp_min(1e-30).log()[segment]
    mass = torch.zeros(n, device=scores.device).index_add(0, segment, relevance)
    weight = relevance / mass.clamp_min(1e-12)[segment]
    per_query = torch.zeros(n, device=scores.device).index_add(0, segment, -weight * log_p)
    return per_query.sum() / (mass > 0).sum().clamp_min(1)


def lambdarank(scores: torch.Tensor, target: torch.Tensor, *, max_len: int,
               max_queries: int = 0, k: int = LAMBDA_K) -> torch.Tensor:
    """LambdaRank over each query of a batch (target as for `listwise_softmax`; a query has at
    most `max_len` rows): for every pair (i, j) of a query with relevance y_i > y_j,
    |ΔNDCG@k_ij| x log(1 + exp(-(s_i - s_j))), where |ΔNDCG@k_ij| is the change in the query's
    NDCG@k if i and j swapped places in the ranking by the current scores (held constant).
    Summed over pairs, averaged over the queries that hold a relevant row. The queries are laid
    out as a [max_queries, max_len] grid (pairs: x max_len); `max_queries` (0: the rows, which
    bound it without a host sync) must be at least the batch's number of queries."""
    relevance, first = target[:, 0], target[:, 1]
    dev = scores.device
    n = max_queries or scores.shape[0]
    row = torch.arange(scores.shape[0], device=dev)
    start = torch.where(first > 0, row, torch.zeros_like(row)).cummax(0).values
    cell = (torch.cumsum(first, 0).long() - 1, row - start)  # (query, place in it)
    s = torch.full((n, max_len), -1e9, device=dev).index_put(cell, scores)
    y = torch.full((n, max_len), -1.0, device=dev).index_put(cell, relevance)
    present = y >= 0
    with torch.no_grad():
        places = torch.arange(max_len, device=dev, dtype=torch.float32)
        rank = torch.argsort(torch.argsort(s, dim=1, descending=True), dim=1).float()
        discount = torch.where(rank < k, 1.0 / torch.log2(rank + 2.0), 0.0)
        gain = torch.where(present, y, 0.0)
        ideal = torch.sort(gain, dim=1, descending=True).values
        idcg = (ideal / torch.log2(places + 2.0) * (places < k)).sum(1)
        delta = ((gain[:, :, None] - gain[:, None, :]).clamp_min(0)
                 * (discount[:, :, None] - discount[:, None, :]).abs()
                 / idcg.clamp_min(1e-12)[:, None, None])
        pairs = (y[:, :, None] > y[:, None, :]) & present[:, :, None] & present[:, None, :]
        weight = torch.where(pairs, delta, 0.0)
    pairwise = nn.functional.softplus(-(s[:, :, None] - s[:, None, :]))
    return (weight * pairwise).sum() / (idcg > 0).sum().clamp_min(1)


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_function(loss: str, max_query_len: int = 0, max_queries: int = 0) -> LossFn:
    """The torch loss named `loss` (see `LOSSES`); lambdarank needs the longest query and, to
    size its grid by queries rather than rows, the most queries a batch holds."""
    if loss == "mse":
        return nn.functional.mse_loss
    if loss == "listwise_softmax":
        return listwise_softmax
    if loss == "lambdarank":
        return functools.partial(lambdarank, max_len=max_query_len, max_queries=max_queries)
    raise ValueError(f"unknown loss {loss!r}; known: {LOSSES}")

Forward = Callable[[torch.Tensor], torch.Tensor]


def _train_epoch(net: Forward, opt: torch.optim.Optimizer, batches: Iterable[Batch],
                 loss_fn: LossFn, device: torch.device) -> torch.Tensor:
    """One pass over this rank's `batches`; returns [sum of loss x rows, rows] (fp64)."""
    losses: list[torch.Tensor] = []
    sizes: list[int] = []
    for x, target in batches:
        with autocast(device):
            pred = net(x)
        loss = loss_fn(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Kept on the device: a `.item()` per batch would stall the GPU on every step.
        losses.append(loss.detach())
        sizes.append(x.shape[0])
    weights = torch.tensor(sizes, dtype=torch.float64).to(device, non_blocking=True)
    return torch.stack([(torch.stack(losses).double() * weights).sum(), weights.sum()])


@dataclass(frozen=True)
class _Queries:
    """The training rows grouped into queries: `rows[starts[q] : starts[q] + lengths[q]]` are
    query q's rows (indices into the training arrays)."""

    rows: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, groups: np.ndarray) -> _Queries:
        rows = np.argsort(groups, kind="stable")
        bounds = np.flatnonzero(np.r_[True, groups[rows][1:] != groups[rows][:-1], True])
        return cls(rows, bounds[:-1], np.diff(bounds))

    def first_row_flags(self, n: int) -> np.ndarray:
        """1.0 on the first row of each query, per training row."""
        flags = np.zeros(n, dtype=np.float32)
        flags[self.rows[self.starts]] = 1.0
        return flags

    def epoch(self, queries: np.ndarray, per_batch: int) -> tuple[torch.Tensor, list[int]]:
        """The rows of `queries` in that order, and batch sizes that cut after every
        `per_batch` queries: a batch never splits a query."""
        lengths = self.lengths[queries]
        ends = np.cumsum(lengths)
        within = np.arange(int(ends[-1])) - np.repeat(ends - lengths, lengths)
        order = self.rows[np.repeat(self.starts[queries], lengths) + within]
        cuts = np.r_[0, ends[per_batch - 1 :: per_batch], ends[-1]]
        sizes = [int(b) for b in np.diff(np.unique(cuts)) if b > 0]
        return torch.from_numpy(order), sizes


def train_network(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    params: TrainParams,
    *,
    train_groups: np.ndarray | None = None,
    valid_groups: np.ndarray | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_mirror: str | None = None,
    on_epoch: EpochCallback | None = None,
    device: torch.device | str | None = None,
    dist: DistContext | None = None,
    stream: bool | None = None,
) -> TrainResult:
    """Train a TabularRegressor with Adam on `params.loss` and report, every epoch,
    `train_loss` and the task's validation metrics (`validation_metric_names`).

    Ranking needs `valid_groups` (one query id per validation row) and, for the listwise loss,
    `train_groups`: then each batch holds whole queries, about `batch_size` rows of them.
    With `checkpoint_dir`, state is saved there after every epoch and the newest checkpoint
    there is resumed, so a retried training continues where the killed one stopped (rank 0
    reads and writes them; the other ranks receive its state). With `checkpoint_mirror` too,
    each checkpoint is also uploaded there and a newer one there is resumed first. `device`
    defaults to CUDA when present; `dist` to the initialised process group, if any. Every rank
    passes the full arrays (normalisation constants come from all training rows) and trains on
    its shard of them (of the queries, for the listwise loss); `batch_size` is the global
    batch, split evenly across the ranks. `stream`: keep the rows in host memory and stream
    batches through DataLoader workers (default: only when they do not fit on the GPU; see
    `ml_platform.ml.batches`).
    """
    if len(x_train) == 0 or len(x_valid) == 0:
        raise ValueError("training and validation sets must not be empty")
    listwise = params.loss in QUERY_LOSSES
    if params.task == "ranking" and valid_groups is None:
        raise ValueError("ranking needs valid_groups: one query id per validation row")
    if listwise and train_groups is None:
        raise ValueError(f"loss {params.loss!r} needs train_groups: one query id per training row")
    ctx = current_context() if dist is None else dist
    device = select_device(ctx) if device is None else torch.device(device)
    torch.manual_seed(params.seed)
    xt, yt = host_tensor(x_train), host_tensor(y_train)
    model = build_scorer(xt, params.hidden) if listwise else build_regressor(xt, yt, params.hidden)
    queries = _Queries.of(np.asarray(train_groups)) if listwise else None
    with torch.no_grad():
        target = (yt - model.y_mean) / model.y_std  # standard units, once
        if queries is not None:  # relevance, and where each query starts
            target = torch.stack([target, torch.from_numpy(queries.first_row_flags(len(xt)))], 1)

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
    y_valid_host = np.asarray(y_valid, dtype=np.float32)
    net: Forward = model.normalised  # one process: no wrapper module to call through
    if ctx.is_distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers (normalisation constants) come from the same rows on every rank: synced once
        # at construction (with the parameters), not before every forward.
        net = DistributedDataParallel(
            _StandardUnits(model), device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False,
        )
    # Queries per batch: as many as make `batch_size` rows on average, the same on every rank.
    per_batch = (max(1, round(batch / float(queries.lengths.mean())))
                 if queries is not None else 0)
    longest = int(queries.lengths.max()) if queries is not None else 0
    loss_fn = loss_function(params.loss, longest, per_batch)

    def epoch_order(epoch: int) -> tuple[torch.Tensor, list[int]]:
        if queries is None:
            order = shard_order(len(xt), epoch, params.seed, ctx)
            return order, batch_sizes(len(order), batch)
        mine = shard_order(len(queries.lengths), epoch, params.seed, ctx).numpy()
        return queries.epoch(mine, per_batch)

    def validate() -> dict[str, float]:
        if params.task == "ranking":
            return _ranking_validation(model, xv, y_valid_host, np.asarray(valid_groups),
                                       params.loss, device)
        return _regression_validation(model, xv, yv, ctx, device)

    writer = (checkpoints.CheckpointWriter(checkpoint_dir, checkpoint_mirror)
              if checkpoint_dir and ctx.is_main else None)
    began, samples = time.perf_counter(), 0
    try:
        for epoch in range(start + 1, params.epochs + 1):
            model.train()
            order, sizes = epoch_order(epoch)
            total = _train_epoch(net, opt, batches.epoch(order, sizes), loss_fn, device)
            all_reduce_sum(total, ctx)
            samples += int(total[1])
            row = {"train_loss": float(total[0] / total[1]), **validate()}
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
