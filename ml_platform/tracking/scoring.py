"""Score a logged or registered model on a frame, loading it the way a serving system would."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml_platform.ml.features import feature_columns, group_ids
from ml_platform.ml.metrics import metrics_for
from ml_platform.specs import ModelSpec
from ml_platform.tracking.gates import GateReport, evaluate_gates


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def score_model(model_uri: str, tracking_uri: str, frame: pd.DataFrame, columns: list[str],
                target: str, task: str, groups: np.ndarray | None = None) -> dict[str, float]:
    """Download `model_uri`, load it with `mlflow.pyfunc`, predict `frame`; metrics + size_mb.

    Loading through pyfunc from the downloaded files is also the orchestrator's proof that
    the artifacts exist and load before anything is registered or promoted.
    """
    import mlflow

    # `models:/` URIs resolve through the registry URI, which is process-global in MLflow.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=tmp, tracking_uri=tracking_uri
        ))
        size = _size_mb(local)
        model = mlflow.pyfunc.load_model(str(local))
        predictions = np.asarray(model.predict(frame[columns].to_numpy(np.float32))).reshape(-1)
    return {**metrics_for(task, frame[target].to_numpy(), predictions, groups=groups),
            "size_mb": size}


@dataclass(frozen=True)
class Comparison:
    """Candidate and champion scored on the same rows, and the gates' verdict."""

    candidate: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    report: GateReport


def compare_with_champion(spec: ModelSpec, tracking_uri: str, test: pd.DataFrame,
                          candidate_uri: str, champion_version: str | None) -> Comparison:
    """Score `candidate_uri` and production's `champion_version` (if any) on `test`; gate."""
    tr = spec.training
    columns = list(feature_columns(tr.feature_builder))
    groups = (group_ids(test, tr.feature_builder, date_column=spec.dataset.date_column)
              if tr.task == "ranking" else None)

    def score(uri: str) -> dict[str, float]:
        return score_model(uri, tracking_uri, test, columns, tr.target, tr.task, groups)

    candidate = score(candidate_uri)
    champion = score(f"models:/{spec.name}/{champion_version}") if champion_version else None
    report = evaluate_gates(spec.promotion, candidate, champion, champion_version)
    return Comparison(candidate, champion, champion_version, report)
