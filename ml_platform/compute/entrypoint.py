"""The training entrypoint: `python -m ml_platform.compute.entrypoint`.

Runs where the compute backend puts it (a local child process or a Kubernetes pod), talks to
the orchestrator through Dagster Pipes only, and logs everything to the MLflow run the
orchestrator created. It imports neither Dagster's core nor its webserver.

Under `torchrun` (a request with `processes` or `nodes` > 1) every rank runs this module: rank 0
opens Pipes, hands the request to the other ranks and alone talks to MLflow and Dagster; the
other ranks never open Pipes (their copies of its environment variables are dropped), they
just train their shard. `--request FILE` trains from a JSON request without Pipes or MLflow.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.compute.request import TrainingRequest
from ml_platform.ml import checkpoint as checkpoints
from ml_platform.ml.distributed import SINGLE, DistContext, broadcast_object, distributed_session
from ml_platform.ml.features import feature_columns
from ml_platform.ml.metrics import metrics_for
from ml_platform.ml.models import parameter_count
from ml_platform.ml.train import EpochCallback, TrainParams, TrainResult, train_regressor
from ml_platform.ml.training_set import SPLIT_COLUMN

if TYPE_CHECKING:
    import torch

_PIPES_ENV = ("DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES")
# MLflow's asynchronous logger then sends what accumulated every 2 s in one request instead of
# one request per `log_metrics` call (fewer requests for the client thread and the server to
# handle while the loop trains), and its flush returns at once instead of waiting out its
# 1 s queue poll. Metrics reach the server at most 2 s late.
_ASYNC_LOGGING_BUFFER = ("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "2")


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_groups: np.ndarray | None = None  # ranking: one id per query of the test rows


def _split(frame: pd.DataFrame, name: str, cols: list[str], target: str) -> tuple[np.ndarray, np.ndarray]:
    part = frame[frame[SPLIT_COLUMN] == name]
    return part[cols].to_numpy(np.float32), part[target].to_numpy(np.float32)


def load_splits(request: TrainingRequest) -> Splits:
    """The request's frozen training set as arrays (labels shuffled for the weak-model drill)."""
    frame = pd.read_parquet(request.training_set_uri)
    cols = list(feature_columns(request.feature_builder))
    x_train, y_train = _split(frame, "train", cols, request.target)
    if request.shuffle_labels:  # a drill: destroys the signal so the gates must refuse it
        y_train = np.random.default_rng(request.seed).permutation(y_train)
    test = frame[frame[SPLIT_COLUMN] == "test"]
    groups = (test.groupby(request.query_columns, sort=False).ngroup().to_numpy(np.int64)
              if request.query_columns else None)
    return Splits(x_train, y_train, *_split(frame, "valid", cols, request.target),
                  *_split(frame, "test", cols, request.target), groups)


def train_params(request: TrainingRequest) -> TrainParams:
    return TrainParams(
        hidden=tuple(request.hidden), epochs=request.epochs, batch_size=request.batch_size,
        learning_rate=request.learning_rate, weight_decay=request.weight_decay, seed=request.seed,
    )


def train_model(request: TrainingRequest, splits: Splits | None = None, *,
                ctx: DistContext = SINGLE, device: torch.device | None = None,
                on_epoch: EpochCallback | None = None, checkpoint: bool = True) -> TrainResult:
    """The training part of the entrypoint, run by every rank: no Pipes, no MLflow.

    Rank 0 writes (and resumes from) the per-epoch checkpoints in the request's
    `checkpoint_dir` and calls `on_epoch`."""
    splits = splits or load_splits(request)
    return train_regressor(
        splits.x_train, splits.y_train, splits.x_valid, splits.y_valid, train_params(request),
        checkpoint_dir=Path(request.checkpoint_dir) if checkpoint else None,
        checkpoint_mirror=request.checkpoint_mirror or None, on_epoch=on_epoch, device=device,
        dist=ctx,
    )


def holdout_metrics(request: TrainingRequest, result: TrainResult, splits: Splits) -> dict[str, float]:
    import torch

    with torch.no_grad():
        pred = result.model(torch.from_numpy(splits.x_test)).numpy()
    metrics = metrics_for(request.task, splits.y_test, pred, groups=splits.test_groups)
    return {f"test_{k}": v for k, v in metrics.items()}


def _summary(result: TrainResult, test: dict[str, float]) -> dict[str, Any]:
    return {
        "epochs": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "parameters": parameter_count(result.model),
        "final_train_loss": result.history[-1]["train_loss"],
        "final_valid_mae": result.history[-1]["valid_mae"],
        "device": result.device,
        "world_size": result.world_size,
        "train_seconds": result.seconds,
        "train_samples_per_second": result.samples_per_second,
        **test,
    }


def _loss_curve(history: list[dict[str, float]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = range(1, len(history) + 1)
    ax[0].plot(epochs, [h["train_loss"] for h in history])
    ax[0].set(title="train loss (MSE, std units)", xlabel="epoch")
    ax[1].plot(epochs, [h["valid_mae"] for h in history], color="tab:orange")
    ax[1].set(title="validation MAE", xlabel="epoch")
    fig.tight_layout()
    return fig


def run_training(request: TrainingRequest, log: Any = None, *, ctx: DistContext = SINGLE,
                 device: torch.device | None = None) -> dict[str, Any]:
    """Rank 0's part: train (with the other ranks, if any) and log params, per-epoch metrics,
    the loss curve, the checkpoint and the model to the request's MLflow run; return a summary."""
    import mlflow
    import torch
    from mlflow.entities import Metric
    from mlflow.models import infer_signature

    from ml_platform.ml.distributed import select_device

    os.environ.setdefault(*_ASYNC_LOGGING_BUFFER)
    device = select_device(ctx) if device is None else device
    splits = load_splits(request)
    params = train_params(request)
    blocked = 0.0  # seconds the training loop spent inside the tracking callback

    with mlflow.start_run(run_id=request.mlflow_run_id):
        mlflow.log_params({
            "hidden": ",".join(map(str, params.hidden)), "epochs": params.epochs,
            "batch_size": params.batch_size, "learning_rate": params.learning_rate,
            "weight_decay": params.weight_decay, "seed": params.seed,
            "shuffle_labels": request.shuffle_labels, "n_features": splits.x_train.shape[1],
            "rows_train": len(splits.x_train), "rows_valid": len(splits.x_valid),
            "rows_test": len(splits.x_test), "device": device.type, "world_size": ctx.world_size,
        })

        client = mlflow.MlflowClient()

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            nonlocal blocked
            began = time.perf_counter()
            # Asynchronous: a slow tracking server must not slow the training loop down. The
            # client's log_batch costs the loop ~5x less than the fluent log_metrics.
            now = int(time.time() * 1000)
            client.log_batch(request.mlflow_run_id, synchronous=False,
                             metrics=[Metric(k, v, now, epoch) for k, v in row.items()])
            if log is not None:
                log.info(f"epoch {epoch}/{params.epochs}: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in row.items()))
            blocked += time.perf_counter() - began

        # What imports and data loading allocated lives for the whole run: frozen, it is not
        # rescanned by every full collection the training loop's allocations trigger.
        gc.collect()
        gc.freeze()
        try:
            result = train_model(request, splits, ctx=ctx, device=device, on_epoch=on_epoch)
        finally:
            gc.unfreeze()
        began = time.perf_counter()
        mlflow.flush_async_logging()  # the per-epoch metrics still queued, if any
        flush = time.perf_counter() - began
        if result.resumed_from_epoch:
            _log_missing_epochs(client, request.mlflow_run_id,
                                result.history[: result.resumed_from_epoch])
        test = holdout_metrics(request, result, splits)
        mlflow.log_metrics(test)
        mlflow.log_figure(_loss_curve(result.history), "loss_curve.png")
        mlflow.log_artifact(str(checkpoints.latest(Path(request.checkpoint_dir))), "checkpoints")
        example = splits.x_test[:8]
        with torch.no_grad():
            signature = infer_signature(example, result.model(torch.from_numpy(example)).numpy())
        info = mlflow.pytorch.log_model(
            result.model,
            name="model",
            serialization_format="pt2",  # torch.export: no pickle, loads without this package
            input_example=example,
            signature=signature,
            pip_requirements=request.pip_requirements or None,
            # What a serving system needs to build the input tensor, in MLmodel's metadata.
            metadata={"feature_columns": list(feature_columns(request.feature_builder)),
                      "target": request.target, "task": request.task},
        )
        mlflow.set_tag("ml_platform.model_uri", info.model_uri)
        mlflow.flush_async_logging()

    return {"model_uri": info.model_uri, **_summary(result, test),
            "tracking_blocked_seconds": blocked, "tracking_flush_seconds": flush}


def _log_missing_epochs(client: Any, run_id: str, history: list[dict[str, float]]) -> None:
    """After a resume, log the checkpoint's epochs the killed attempt had not yet delivered
    (asynchronous logging dies with its process): every step once, none twice."""
    from mlflow.entities import Metric

    logged = {m.step for m in client.get_metric_history(run_id, "valid_mae")}
    now = int(time.time() * 1000)
    missing = [Metric(k, v, now, epoch) for epoch, row in enumerate(history, start=1)
               if epoch not in logged for k, v in row.items()]
    if missing:
        client.log_batch(run_id, metrics=missing)


def run_untracked(request: TrainingRequest, *, ctx: DistContext = SINGLE,
                  device: torch.device | None = None, checkpoint: bool = True
                  ) -> dict[str, Any] | None:
    """Every rank's training without Pipes or MLflow: rank 0 returns the summary and the
    per-epoch history, the other ranks None."""
    splits = load_splits(request)
    result = train_model(request, splits, ctx=ctx, device=device, checkpoint=checkpoint)
    if not ctx.is_main:
        return None
    return {**_summary(result, holdout_metrics(request, result, splits)), "history": result.history}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ml_platform.compute.entrypoint",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--request", type=Path,
                        help="train from this JSON TrainingRequest, without Dagster Pipes or MLflow")
    parser.add_argument("--output", type=Path, help="with --request: rank 0 writes its summary here")
    args = parser.parse_args(argv)

    ctx = DistContext.from_env()
    if not ctx.is_main:
        # torchrun hands every rank the launcher's environment: only rank 0 may open Pipes,
        # so no library on another rank can find (and write to) the orchestrator's channel.
        for var in _PIPES_ENV:
            os.environ.pop(var, None)

    if args.request is not None:
        with distributed_session(ctx) as (ctx, device):
            extras = json.loads(args.request.read_text()) if ctx.is_main else None
            request = TrainingRequest.from_extras(broadcast_object(extras, ctx))
            summary = run_untracked(request, ctx=ctx, device=device)
        if summary is not None and args.output is not None:
            args.output.write_text(json.dumps(summary, indent=2))
        return

    if not ctx.is_main:
        with distributed_session(ctx) as (ctx, device):
            request = TrainingRequest.from_extras(broadcast_object(None, ctx))
            train_model(request, ctx=ctx, device=device)
        return

    from dagster_pipes import open_dagster_pipes

    # Pipes first: a failure to join the process group is then reported to the orchestrator.
    with open_dagster_pipes() as pipes, distributed_session(ctx) as (ctx, device):
        request = TrainingRequest.from_extras(broadcast_object(dict(pipes.extras), ctx))
        pipes.log.info(f"training on {device} with {ctx.world_size} process(es)")
        summary = run_training(request, log=pipes.log, ctx=ctx, device=device)
        pipes.report_asset_materialization(metadata=summary)


if __name__ == "__main__":
    main()
