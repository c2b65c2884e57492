"""Score a logged or registered model on a frame, loading it the way a serving system would.

The frame is a training set's rows: the raw columns a model takes (under the dataset's names)
and the features. A model logged by this platform takes raw rows (its metadata lists
`input_columns`) and is sent the frame's raw columns its signature names; one logged before
raw-rows models (its metadata lists `feature_columns`: a float32 matrix of engineered features)
is sent those features, so a new candidate is still compared with an old champion."""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.ml.features import FEATURE_PREFIX, query_ids
from ml_platform.ml.metrics import metrics_for
from ml_platform.specs import ModelSpec
from ml_platform.tracking.gates import GateReport, evaluate_gates


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def model_input(model: Any, frame: pd.DataFrame) -> pd.DataFrame | np.ndarray:
    """What `model` (a loaded pyfunc model) is sent for `frame`'s rows: the raw columns its
    signature names, or, for a model of the older contract, its engineered feature matrix."""
    meta = model.metadata.metadata or {}
    if "feature_columns" in meta and "input_columns" not in meta:
        return frame[[FEATURE_PREFIX + c for c in meta["feature_columns"]]].to_numpy(np.float32)
    names = model.metadata.get_input_schema().input_names()
    return frame[[c for c in names if c in frame.columns]]


def download_model(model_uri: str, tracking_uri: str, dst: Path) -> Path:
    """Download `model_uri` (`models:/<name>/<version>`, `models:/<name>@<alias>`,
    `models:/<model id>` or an artifact URI) from `tracking_uri`'s server into `dst`.

    MLflow resolves `models:/` through its process-global registry URI, whatever registry
    is passed; `mlflow.set_registry_uri` would also write MLFLOW_REGISTRY_URI into the
    environment that every child process inherits. So the URI is resolved here, with a
    client that names its server."""
    import mlflow
    from mlflow.store.artifact.utils.models import get_model_name_and_version, is_models_uri

    location = model_uri
    if is_models_uri(model_uri):
        client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
        found = get_model_name_and_version(client, model_uri)
        location = (client.get_logged_model(found[0]).artifact_location if len(found) == 1
                    else client.get_model_version_download_uri(*found))
    dst.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst),
                                                    tracking_uri=tracking_uri))


_log = logging.getLogger(__name__)
_warm_up_lock = threading.Lock()
_warm_up_thread: threading.Thread | None = None


def _import_scoring_libraries() -> None:
    """Import what loading a logged model imports (torch, its export and dynamo parts, MLflow's
    pyfunc) and fill the map of installed packages MLflow's requirement check reads: seconds,
    once per process."""
    try:
        import mlflow.pyfunc  # noqa: F401
        import torch._dynamo
        import torch.export  # noqa: F401
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
    except Exception:  # the step's own imports then fail, and say why
        _log.debug("warming up the scoring imports failed", exc_info=True)


def warm_up_scoring() -> None:
    """Start those imports in a background thread (once per process), so that a step that
    scores models later in this process (`evaluation`) finds them done: call it before waiting
    on something else, such as the training process."""
    global _warm_up_thread
    with _warm_up_lock:
        if _warm_up_thread is None:
            _warm_up_thread = threading.Thread(target=_import_scoring_libraries,
                                               name="scoring-imports", daemon=True)
            _warm_up_thread.start()


def _scoring_libraries() -> None:
    """Wait for the warm-up's imports (starting them here if nobody did): one thread imports
    torch's lazily loaded parts, never two at once."""
    warm_up_scoring()
    assert _warm_up_thread is not None
    _warm_up_thread.join()


def score_model(model_uri: str, tracking_uri: str, frame: pd.DataFrame, target: str, task: str,
                groups: np.ndarray | None = None) -> dict[str, float]:
    """Download `model_uri`, load it with `mlflow.pyfunc`, predict `frame`'s rows (see
    `model_input`); metrics + size_mb.

    Loading through pyfunc from the downloaded files is also the orchestrator's proof that
    the artifacts exist and load before anything is registered or promoted.
    """
    # Imported before MLflow loads the model's code, by one thread (the warm-up's, usually
    # started while the training ran), then here: first imports of torch's lazily loaded
    # parts from MLflow's loading path have been seen to fail in a daemon-launched run worker
    # under load ("partially initialized module 'torch'", "torch._dynamo has no attribute
    # 'guards'").
    _scoring_libraries()
    import mlflow
    import torch._dynamo
    import torch.export  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        local = download_model(model_uri, tracking_uri, Path(tmp))
        size = _size_mb(local)
        model = mlflow.pyfunc.load_model(str(local))
        predictions = np.asarray(model.predict(model_input(model, frame))).reshape(-1)
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
    groups = query_ids(test, spec.query_columns) if spec.query_columns else None

    def score(uri: str) -> dict[str, float]:
        return score_model(uri, tracking_uri, test, tr.target, tr.task, groups)

    candidate = score(candidate_uri)
    champion = score(f"models:/{spec.name}/{champion_version}") if champion_version else None
    report = evaluate_gates(spec.promotion, candidate, champion, champion_version)
    return Comparison(candidate, champion, champion_version, report)
