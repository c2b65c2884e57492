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
import re
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.compute.code_package import code_record
from ml_platform.compute.model_export import log_raw_rows_model, predict_features
from ml_platform.compute.request import TrainingRequest
from ml_platform.compute.usage import UsageSampler, combine, usage_record
from ml_platform.ml import checkpoint as checkpoints
from ml_platform.ml import feature_transforms
from ml_platform.ml.distributed import (
    SINGLE,
    DistContext,
    broadcast_object,
    distributed_session,
    gather_object,
)
from ml_platform.ml.features import FEATURE_PREFIX, feature_columns, query_ids, transform_config
from ml_platform.ml.importance import permutation_importance
from ml_platform.ml.metrics import metrics_for, ndcg_at_k
from ml_platform.ml.models import parameter_count
from ml_platform.ml.train import (
    EpochCallback,
    TrainParams,
    TrainResult,
    default_loss,
    train_network,
)
from ml_platform.ml.training_set import SPLIT_COLUMN
from ml_platform.names import Tag

if TYPE_CHECKING:
    import torch

_PIPES_ENV = ("DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES")
# Notes MLflow prints on every training about choices made on purpose: the training set's source
# is a local path (two source types claim it), and the signature has integer columns (the served
# inputs are validated columns, where the `nulls` check allows no missing value).
_MLFLOW_NOTES = ("The specified dataset source can be interpreted in multiple ways",
                 "Hint: Inferred schema contains integer column")
# MLflow's asynchronous logger then sends what accumulated every 2 s in one request instead of
# one request per `log_metrics` call (fewer requests for the client thread and the server to
# handle while the loop trains), and its flush returns at once instead of waiting out its
# 1 s queue poll. Metrics reach the server at most 2 s late.
_ASYNC_LOGGING_BUFFER = ("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "2")
# MLflow's system metrics (CPU, memory, disk, network; GPU utilisation and memory with pynvml and
# a GPU): a sample every 2 s from a background thread (MLflow's default, 10 s, would leave a
# training of a few seconds without one).
_SYSTEM_METRICS = (("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "2"),
                   ("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1"))
DIGEST_CHARS = 16  # a dataset digest is at most 36 characters: the hash as the lake names it


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_groups: np.ndarray | None = None  # ranking: one id per query of the test rows
    train_groups: np.ndarray | None = None
    valid_groups: np.ndarray | None = None
    raw_valid: pd.DataFrame | None = None  # the raw input columns of the validation rows
    raw_test: pd.DataFrame | None = None


def raw_columns(frame: pd.DataFrame, target: str) -> list[str]:
    """The raw input columns of a training set: all but the features, target and split."""
    return [c for c in frame.columns
            if not c.startswith(FEATURE_PREFIX) and c not in (target, SPLIT_COLUMN)]


def transform_config_of(request: TrainingRequest, frame: pd.DataFrame) -> dict[str, Any]:
    """The feature transform's config for the request's training set (its date column is the
    table's second column: `ml.features` lays tables out as key, date, ...)."""
    return transform_config(request.feature_builder, str(frame.columns[1]))


def read_training_set(request: TrainingRequest) -> pd.DataFrame:
    frame = pd.read_parquet(request.training_set_uri)
    missing = [c for c in feature_columns(request.feature_builder) if c not in frame.columns]
    if missing:
        raise ValueError(f"training set {request.training_set_uri} lacks feature column(s) "
                         f"{missing[:3]}...: built by an older feature builder; materialize "
                         "its features and training_set again")
    return frame


def load_splits(request: TrainingRequest, frame: pd.DataFrame | None = None) -> Splits:
    """The request's frozen training set as arrays (labels shuffled for the weak-model drill),
    with query ids per split for ranking and the raw columns of the held-out rows."""
    frame = read_training_set(request) if frame is None else frame
    cols = list(feature_columns(request.feature_builder))
    raw = raw_columns(frame, request.target)
    parts = {name: frame[frame[SPLIT_COLUMN] == name] for name in ("train", "valid", "test")}

    def arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
        part = parts[name]
        return part[cols].to_numpy(np.float32), part[request.target].to_numpy(np.float32)

    def groups(name: str) -> np.ndarray | None:
        return query_ids(parts[name], request.query_columns) if request.query_columns else None

    x_train, y_train = arrays("train")
    if request.shuffle_labels:  # a drill: destroys the signal so the gates must refuse it
        y_train = np.random.default_rng(request.seed).permutation(y_train)
    return Splits(x_train, y_train, *arrays("valid"), *arrays("test"), groups("test"),
                  train_groups=groups("train"), valid_groups=groups("valid"),
                  raw_valid=parts["valid"][raw].reset_index(drop=True),
                  raw_test=parts["test"][raw].reset_index(drop=True))


def train_params(request: TrainingRequest) -> TrainParams:
    return TrainParams(
        hidden=tuple(request.hidden), epochs=request.epochs, batch_size=request.batch_size,
        learning_rate=request.learning_rate, weight_decay=request.weight_decay, seed=request.seed,
        task=request.task, loss=request.loss or default_loss(request.task),
    )


def train_model(request: TrainingRequest, splits: Splits | None = None, *,
                ctx: DistContext = SINGLE, device: torch.device | None = None,
                on_epoch: EpochCallback | None = None, checkpoint: bool = True) -> TrainResult:
    """The training part of the entrypoint, run by every rank: no Pipes, no MLflow.

    Rank 0 writes (and resumes from) the per-epoch checkpoints in the request's
    `checkpoint_dir` and calls `on_epoch`."""
    splits = splits or load_splits(request)
    return train_network(
        splits.x_train, splits.y_train, splits.x_valid, splits.y_valid, train_params(request),
        train_groups=splits.train_groups, valid_groups=splits.valid_groups,
        checkpoint_dir=Path(request.checkpoint_dir) if checkpoint else None,
        checkpoint_mirror=request.checkpoint_mirror or None, on_epoch=on_epoch, device=device,
        dist=ctx,
    )


def holdout_metrics(request: TrainingRequest, result: TrainResult, splits: Splits) -> dict[str, float]:
    pred = predict_features(result.model, splits.x_test)
    metrics = metrics_for(request.task, splits.y_test, pred, groups=splits.test_groups)
    return {f"test_{k}": v for k, v in metrics.items()}


def _summary(result: TrainResult, test: dict[str, float]) -> dict[str, Any]:
    last = result.history[-1]
    return {
        "epochs": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "parameters": parameter_count(result.model),
        **{f"final_{k}": v for k, v in last.items()},
        "device": result.device,
        "world_size": result.world_size,
        "train_seconds": result.seconds,
        "train_samples_per_second": result.samples_per_second,
        **test,
    }


_CURVES = {  # panel title -> the history's metrics drawn in it
    "regression": {"loss (MSE, std units)": ("train_loss", "valid_loss"),
                   "validation error ($)": ("valid_mae", "valid_rmse")},
    "ranking": {"loss": ("train_loss", "valid_loss"),
                "validation ranking": ("valid_ndcg_at_10", "valid_precision_at_10")},
}


def _loss_curve(history: list[dict[str, float]], task: str, loss: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = range(1, len(history) + 1)
    for ax, (title, names) in zip(axes, _CURVES[task].items(), strict=True):
        for name in names:
            ax.plot(epochs, [h[name] for h in history], marker=".", label=name)
        ax.set(title=title.replace("loss", f"loss ({loss})") if title == "loss" else title,
               xlabel="epoch")
        ax.legend()
    fig.tight_layout()
    return fig


def feature_importance(request: TrainingRequest, result: TrainResult, splits: Splits,
                       config: dict[str, Any]) -> pd.DataFrame:
    """Permutation importance of the raw input columns on the validation rows: how much the
    task's metric (MAE, or NDCG@10) worsens when one column's values are shuffled."""
    assert splits.raw_valid is not None

    def predict(rows: pd.DataFrame) -> np.ndarray:
        return predict_features(result.model, feature_transforms.transform(rows, config))

    if request.task == "ranking":
        def score(pred: np.ndarray) -> float:
            return ndcg_at_k(splits.y_valid, pred, splits.valid_groups, k=10)
        metric, higher = "ndcg_at_10", True
    else:
        def score(pred: np.ndarray) -> float:
            return float(np.abs(pred - splits.y_valid).mean())
        metric, higher = "mae", False
    return permutation_importance(predict, splits.raw_valid, list(feature_transforms.inputs(config)),
                                  score, metric=metric, higher_is_better=higher, seed=request.seed)


def _importance_chart(table: pd.DataFrame) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    ordered = table.iloc[::-1]  # the most important on top
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(table) + 1.2))
    ax.barh(ordered["column"], ordered["importance"], xerr=ordered["std"], color="tab:blue")
    ax.set(title=f"permutation importance: {table['metric'].iloc[0]} worse by",
           xlabel=table["metric"].iloc[0])
    fig.tight_layout()
    return fig


TOP_FEATURES = 5  # importances in the summary, hence in the `trained` asset's metadata


def dataset_schema(split: pd.DataFrame, types: dict[str, Any]) -> Any:
    """The MLflow schema of one split, as `mlflow.data.from_pandas` infers it, in a fraction
    of the time: MLflow tests every value of every column in Python (a second for 30 days).
    Here a numeric column is required when it has no NaN (vectorised: the same answer), other
    columns are tested as MLflow does; `types` are the table's column types (`column_types`)."""
    from mlflow.types import ColSpec, Schema
    from mlflow.types.utils import _infer_required

    def required(col: pd.Series) -> bool:
        return (not bool(col.isna().any())) if col.dtype.kind in "fiub" else _infer_required(col)

    return Schema([ColSpec(type=types[c], name=c, required=required(split[c]))
                   for c in split.columns])


TYPE_SAMPLE_ROWS = 1000  # rows that give a non-numeric column its MLflow type


def column_types(frame: pd.DataFrame) -> dict[str, Any]:
    """MLflow's type of each column of a training set: exact for numeric columns, from the
    first rows for the others (a lake table's column holds values of one type)."""
    from mlflow.types.utils import _infer_pandas_column

    head = frame.head(TYPE_SAMPLE_ROWS)
    return {c: _infer_pandas_column(frame[c] if frame[c].dtype.kind in "fiub" else head[c])
            for c in frame.columns}


def _log_datasets(request: TrainingRequest, frame: pd.DataFrame, run_tags: dict[str, str]) -> None:
    """The three splits as the run's inputs: one dataset each, whose digest is the training
    set's hash (as the lake names it) and whose source is the snapshot's URI; one request."""
    import mlflow

    # `mlflow.data.from_pandas` is attached at import time: name its module for the checker.
    from mlflow.data.pandas_dataset import from_pandas

    digest = request.training_set_hash or run_tags.get(Tag.TRAINING_SET_HASH, "")
    days = sorted(request.partitions)
    partitions = (f"{days[0]}..{days[-1]} ({len(days)})" if len(days) > 1 else "".join(days)
                  ) or run_tags.get(Tag.DAGSTER_PARTITIONS, "")
    tags = {Tag.TRAINING_SET_HASH: digest, Tag.DATASET_PARTITIONS: partitions}
    if days and len(",".join(days)) <= 500:  # MLflow's limit of a tag value
        tags[Tag.DATASET_PARTITION_KEYS] = ",".join(days)
    types = column_types(frame)
    datasets, contexts = [], []
    for split, context in (("train", "training"), ("valid", "validation"), ("test", "test")):
        rows = frame[frame[SPLIT_COLUMN] == split]
        dataset = from_pandas(
            rows, source=request.training_set_uri,
            targets=request.target, name=f"{request.model}/training_set/{split}",
            digest=digest[:DIGEST_CHARS] or None,
        )
        # `schema` is a cached property: set, MLflow's own (slow) inference never runs.
        dataset.schema = dataset_schema(rows, types)
        datasets.append(dataset)
        contexts.append(context)
    present = {k: v for k, v in tags.items() if v}
    mlflow.log_inputs(datasets=list(datasets), contexts=list(contexts),
                      tags_list=[present] * len(datasets))


def run_training(request: TrainingRequest, log: Any = None, *, ctx: DistContext = SINGLE,
                 device: torch.device | None = None, usage: UsageSampler | None = None
                 ) -> dict[str, Any]:
    """Rank 0's part: train (with the other ranks, if any) and log params, datasets, system
    metrics, per-epoch metrics, the curves, feature importance, the checkpoint, the
    raw-rows model and what the training used (`usage`, started with the process; default:
    from now on) to the request's MLflow run; return a summary."""
    import mlflow
    from mlflow.entities import Metric, RunTag

    from ml_platform.ml.distributed import select_device

    usage = usage or UsageSampler().start()
    os.environ.setdefault(*_ASYNC_LOGGING_BUFFER)
    for name, value in _SYSTEM_METRICS:
        os.environ.setdefault(name, value)
    device = select_device(ctx) if device is None else device
    frame = read_training_set(request)
    splits = load_splits(request, frame)
    config = transform_config_of(request, frame)
    params = train_params(request)
    blocked = 0.0  # seconds the training loop spent inside the tracking callback

    client = mlflow.MlflowClient()
    run_tags = client.get_run(request.mlflow_run_id).data.tags
    with mlflow.start_run(run_id=request.mlflow_run_id, log_system_metrics=True):
        mlflow.log_params({
            "task": params.task, "loss": params.loss,
            "query_columns": ",".join(request.query_columns) or "-",
            "hidden": ",".join(map(str, params.hidden)), "epochs": params.epochs,
            "batch_size": params.batch_size, "learning_rate": params.learning_rate,
            "weight_decay": params.weight_decay, "seed": params.seed,
            "shuffle_labels": request.shuffle_labels, "n_features": splits.x_train.shape[1],
            "input_columns": ",".join(feature_transforms.inputs(config)),
            "rows_train": len(splits.x_train), "rows_valid": len(splits.x_valid),
            "rows_test": len(splits.x_test), "device": device.type, "world_size": ctx.world_size,
        })
        _log_datasets(request, frame, run_tags)
        del frame

        logged_before: set[int] | None = None  # the epochs an earlier attempt logged

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            nonlocal blocked, logged_before
            began = time.perf_counter()
            if logged_before is None:
                # A resumed attempt (its first epoch is not 1): the attempt before it (a
                # preempted pod) may have logged epochs past its last mirrored checkpoint;
                # those are trained again here but not logged twice.
                logged_before = set() if epoch == 1 else {m.step for m in client.get_metric_history(
                    request.mlflow_run_id, "train_loss")}
            if epoch not in logged_before:
                # Asynchronous: a slow tracking server must not slow the training loop down.
                # The client's log_batch costs the loop ~5x less than the fluent log_metrics.
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
        # The other ranks' usage, sent as they finish training (see `main`).
        peers = [p for p in gather_object(None, ctx)[1:] if p is not None]
        began = time.perf_counter()
        mlflow.flush_async_logging()  # the per-epoch metrics still queued, if any
        flush = time.perf_counter() - began
        if result.resumed_from_epoch:
            _log_missing_epochs(client, request.mlflow_run_id,
                                result.history[: result.resumed_from_epoch])
        test = holdout_metrics(request, result, splits)
        mlflow.log_metrics(test)
        mlflow.log_figure(_loss_curve(result.history, params.task, params.loss), "loss_curve.png")

        began = time.perf_counter()
        importance = feature_importance(request, result, splits, config)
        importance_seconds = time.perf_counter() - began
        mlflow.log_table(importance, "feature_importance.json")
        mlflow.log_figure(_importance_chart(importance), "feature_importance.png")

        mlflow.log_artifact(str(checkpoints.latest(Path(request.checkpoint_dir))), "checkpoints")
        assert splits.raw_test is not None
        info = log_raw_rows_model(
            result.model, config, splits.raw_test, name=request.model,
            output=request.target if request.task == "regression" else "score",
            pip_requirements=request.pip_requirements,
            metadata={"target": request.target, "task": request.task,
                      "query_columns": request.query_columns},
        )
        mlflow.set_tag(Tag.MODEL_URI, info.model_uri)
        mlflow.flush_async_logging()
        _log_system_metrics_once(client, request.mlflow_run_id)
        used = usage_record(combine([usage.stop(), *peers]), request.requests, request.prices)
        code = code_record(os.environ)
        client.log_batch(request.mlflow_run_id,
                         metrics=[Metric(k, v, int(time.time() * 1000), 0)
                                  for k, v in {**used.metrics, **code.metrics}.items()],
                         tags=[RunTag(k, v) for k, v in {**used.tags, **code.tags}.items()])

    top = importance.head(TOP_FEATURES)
    return {"model_uri": info.model_uri, **_summary(result, test), **used.summary(),
            **{f"importance.{c}": float(v) for c, v in zip(top["column"], top["importance"],
                                                          strict=True)},
            **code.tags, **code.metrics,
            "feature_importance_seconds": importance_seconds,
            "tracking_blocked_seconds": blocked, "tracking_flush_seconds": flush}


def _log_system_metrics_once(client: Any, run_id: str) -> None:
    """MLflow's system-metrics monitor publishes a sample only after a full sampling interval,
    so a run shorter than that would record none: then take one sample now, with MLflow's own
    collectors, at the monitor's next step."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    if any(key.startswith("system/") for key in client.get_run(run_id).data.metrics):
        return
    monitor = SystemMetricsMonitor(run_id, resume_logging=True)
    monitor.collect_metrics()
    monitor.publish_metrics(monitor.aggregate_metrics())
    monitor.mlflow_logger.flush()


def _log_missing_epochs(client: Any, run_id: str, history: list[dict[str, float]]) -> None:
    """After a resume, log the checkpoint's epochs the killed attempt had not yet delivered
    (asynchronous logging dies with its process): every step once, none twice."""
    from mlflow.entities import Metric

    logged = {m.step for m in client.get_metric_history(run_id, "train_loss")}
    now = int(time.time() * 1000)
    missing = [Metric(k, v, now, epoch) for epoch, row in enumerate(history, start=1)
               if epoch not in logged for k, v in row.items()]
    if missing:
        client.log_batch(run_id, metrics=missing)


def run_untracked(request: TrainingRequest, *, ctx: DistContext = SINGLE,
                  device: torch.device | None = None, checkpoint: bool = True
                  ) -> dict[str, Any] | None:
    """Every rank's training without Pipes or MLflow: rank 0 returns the summary and the
    per-epoch history, the other ranks None. No feature importance, no model logged."""
    splits = load_splits(request)
    result = train_model(request, splits, ctx=ctx, device=device, checkpoint=checkpoint)
    if not ctx.is_main:
        return None
    return {**_summary(result, holdout_metrics(request, result, splits)), "history": result.history}


class Preempted(Exception):
    """The process was asked to stop: SIGTERM (a deleted pod, a node drain, a spot reclaim)."""


def stop_on_sigterm() -> None:
    """Turn SIGTERM into `Preempted` in the main thread, so the training loop's cleanup waits for
    the newest checkpoint's write and upload (what the step's retry resumes from) within the
    pod's grace period, and the orchestrator hears why the training stopped. Without a handler,
    a container's PID 1 ignores SIGTERM and dies by the SIGKILL that ends the grace period. A
    second SIGTERM is ignored while that cleanup runs."""
    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Preempted("training stopped by SIGTERM (pod deleted, node drained or preempted): "
                        "the newest checkpoint is kept for the retry")

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ml_platform.compute.entrypoint",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--request", type=Path,
                        help="train from this JSON TrainingRequest, without Dagster Pipes or MLflow")
    parser.add_argument("--output", type=Path, help="with --request: rank 0 writes its summary here")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    for note in _MLFLOW_NOTES:
        warnings.filterwarnings("ignore", message=re.escape(note), category=UserWarning)

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

    # One sampler per node reads the node's GPUs: the local rank 0's.
    usage = UsageSampler(gpus=ctx.local_rank == 0).start()
    if not ctx.is_main:
        with distributed_session(ctx) as (ctx, device):
            request = TrainingRequest.from_extras(broadcast_object(None, ctx))
            train_model(request, ctx=ctx, device=device)
            gather_object(usage.stop(), ctx)  # to rank 0, which records the training's usage
        return

    from dagster_pipes import open_dagster_pipes

    # Pipes first: a failure to join the process group is then reported to the orchestrator.
    with open_dagster_pipes() as pipes, distributed_session(ctx) as (ctx, device):
        request = TrainingRequest.from_extras(broadcast_object(dict(pipes.extras), ctx))
        pipes.log.info(f"training on {device} with {ctx.world_size} process(es)")
        summary = run_training(request, log=pipes.log, ctx=ctx, device=device, usage=usage)
        pipes.report_asset_materialization(metadata=summary)


def exit_now(code: int = 0) -> None:
    """End the process without the interpreter's teardown: once everything is written,
    reported and flushed, destroying torch's, MLflow's and matplotlib's modules and objects
    only costs time (about a second with all three loaded)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
    exit_now()  # reached only on success: a failure's traceback takes the ordinary way out
