"""Score a logged or registered model on a frame, loading it the way a serving system would."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ml_platform.ml.metrics import metrics_for


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def score_model(model_uri: str, tracking_uri: str, frame: pd.DataFrame, columns: list[str],
                target: str, task: str) -> dict[str, float]:
    """Download `model_uri`, load it with `mlflow.pyfunc`, predict `frame`; metrics + size_mb.

    Loading through pyfunc from the downloaded files is also the orchestrator's proof that
    the artifacts exist and load before anything is registered or promoted.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=tmp, tracking_uri=tracking_uri
        ))
        size = _size_mb(local)
        model = mlflow.pyfunc.load_model(str(local))
        predictions = np.asarray(model.predict(frame[columns].to_numpy(np.float32))).reshape(-1)
    return {**metrics_for(task, frame[target].to_numpy(), predictions), "size_mb": size}
