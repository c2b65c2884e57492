"""The training entrypoint: `python -m ml_platform.compute.entrypoint`.

Runs where the compute backend puts it (a local child process or a Kubernetes pod), talks to
the orchestrator through Dagster Pipes only, and logs everything to the MLflow run the
orchestrator created. It imports neither Dagster's core nor its webserver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.compute.request import TrainingRequest
from ml_platform.ml.features import feature_columns
from ml_platform.ml.metrics import metrics_for
from ml_platform.ml.models import parameter_count
from ml_platform.ml.train import TrainParams, train_regressor
from ml_platform.ml.training_set import SPLIT_COLUMN


def _split(frame: pd.DataFrame, name: str, cols: list[str], target: str) -> tuple[np.ndarray, np.ndarray]:
    part = frame[frame[SPLIT_COLUMN] == name]
    return part[cols].to_numpy(np.float32), part[target].to_numpy(np.float32)


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


def run_training(request: TrainingRequest, log: Any = None) -> dict[str, Any]:
    """Train, log params/metrics/loss curve/model to the request's MLflow run; return a summary."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    frame = pd.read_parquet(request.training_set_uri)
    cols = list(feature_columns(request.feature_builder))
    x_train, y_train = _split(frame, "train", cols, request.target)
    x_valid, y_valid = _split(frame, "valid", cols, request.target)
    x_test, y_test = _split(frame, "test", cols, request.target)
    if request.shuffle_labels:  # a drill: destroys the signal so the gates must refuse it
        y_train = np.random.default_rng(request.seed).permutation(y_train)
    params = TrainParams(
        hidden=tuple(request.hidden), epochs=request.epochs, batch_size=request.batch_size,
        learning_rate=request.learning_rate, weight_decay=request.weight_decay, seed=request.seed,
    )
    checkpoint = Path(request.checkpoint_dir) / "last.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)

    with mlflow.start_run(run_id=request.mlflow_run_id):
        mlflow.log_params({
            "hidden": ",".join(map(str, params.hidden)), "epochs": params.epochs,
            "batch_size": params.batch_size, "learning_rate": params.learning_rate,
            "weight_decay": params.weight_decay, "seed": params.seed,
            "shuffle_labels": request.shuffle_labels, "n_features": len(cols),
            "rows_train": len(x_train), "rows_valid": len(x_valid), "rows_test": len(x_test),
        })

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            # Asynchronous: a slow tracking server must not slow the training loop down.
            mlflow.log_metrics(row, step=epoch, synchronous=False)
            if log is not None:
                log.info(f"epoch {epoch}/{params.epochs}: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in row.items()))

        result = train_regressor(
            x_train, y_train, x_valid, y_valid, params, checkpoint=checkpoint, on_epoch=on_epoch
        )
        with torch.no_grad():
            test = metrics_for(request.task, y_test, result.model(torch.from_numpy(x_test)).numpy())
        mlflow.log_metrics({f"test_{k}": v for k, v in test.items()})
        mlflow.log_figure(_loss_curve(result.history), "loss_curve.png")
        mlflow.log_artifact(str(checkpoint), "checkpoints")
        example = x_test[:8]
        with torch.no_grad():
            signature = infer_signature(example, result.model(torch.from_numpy(example)).numpy())
        info = mlflow.pytorch.log_model(
            result.model,
            name="model",
            serialization_format="pt2",  # torch.export: no pickle, loads without this package
            input_example=example,
            signature=signature,
            pip_requirements=request.pip_requirements or None,
        )
        mlflow.set_tag("ml_platform.model_uri", info.model_uri)
        mlflow.flush_async_logging()

    return {
        "model_uri": info.model_uri,
        "epochs": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "parameters": parameter_count(result.model),
        "final_train_loss": result.history[-1]["train_loss"],
        "final_valid_mae": result.history[-1]["valid_mae"],
        **{f"test_{k}": v for k, v in test.items()},
    }


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        request = TrainingRequest.from_extras(dict(pipes.extras))
        summary = run_training(request, log=pipes.log)
        pipes.report_asset_materialization(metadata=summary)


if __name__ == "__main__":
    main()
