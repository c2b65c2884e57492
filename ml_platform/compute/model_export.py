"""The model a training run registers: raw rows in, the training feature code, then the network.

Logged with MLflow's models-from-code: the model is `ml_platform/ml/served_model.py`, its
artifacts `ml_platform/ml/feature_transforms.py` (the very file the training path's features
came from) and the network as a torch.export program, its config the transform's parameters.
Nothing is pickled; it loads with `mlflow.pyfunc.load_model` where only MLflow, pandas, numpy
and torch are installed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ml_platform.ml import feature_transforms

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo
    from torch import nn

NETWORK = "network.pt2"
# The models-from-code file: never imported by ml_platform, logged by path.
SERVED_MODEL = Path(feature_transforms.__file__).with_name("served_model.py")


def export_network(network: nn.Module, n_features: int, path: Path) -> Path:
    """`network` (features in, one value a row out) as a torch.export program with a dynamic
    batch dimension, saved at `path`."""
    import torch

    example = torch.zeros(4, n_features)
    program = torch.export.export(network.eval(), (example,),
                                  dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    torch.export.save(program, path)
    return path


def _column_type(values: pd.Series) -> str:
    """The MLflow schema type of a raw column as the lake stores it."""
    if ptypes.is_bool_dtype(values):
        return "boolean"
    if ptypes.is_integer_dtype(values):
        return "long"
    if ptypes.is_float_dtype(values):
        return "double"
    if ptypes.is_datetime64_any_dtype(values):
        return "datetime"
    first = values.dropna().iloc[0] if values.notna().any() else ""
    if hasattr(first, "isoformat"):  # the lake's date columns: Python dates
        return "datetime"
    return "string"


def raw_signature(raw: pd.DataFrame, required: list[str], output: str) -> ModelSignature:
    """The signature of a model taking `raw`'s columns: those the transform reads are
    required, the others (the key, ids, outcomes recorded after the fact) optional."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec(_column_type(raw[c]), c, required=c in required)
                     for c in raw.columns])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", output)]))


def input_example(raw: pd.DataFrame, date_column: str, rows: int = 5) -> pd.DataFrame:
    """A few raw rows as a client sends them (dates as ISO strings: JSON has no dates)."""
    example = raw.head(rows).reset_index(drop=True).copy()
    if date_column in example:
        example[date_column] = pd.to_datetime(example[date_column]).dt.strftime("%Y-%m-%d")
    for column in example.columns:
        if isinstance(example[column].dtype, pd.StringDtype):
            example[column] = example[column].astype(object)
    return example


def default_requirements() -> list[str]:
    """What the served model imports, at the versions installed here."""
    from importlib.metadata import version

    return [f"mlflow=={version('mlflow')}", f"torch=={version('torch').split('+')[0]}",
            f"pandas=={version('pandas')}", f"numpy=={version('numpy')}"]


def log_raw_rows_model(network: nn.Module, config: feature_transforms.Config,
                       raw: pd.DataFrame, *, name: str, output: str,
                       pip_requirements: list[str] | None, metadata: dict[str, Any]) -> ModelInfo:
    """Log the raw-rows model of `network` to the active MLflow run, named `name` (the
    model's name: the run's page lists it so).

    `raw`: a sample of the raw input columns (the signature's columns and types, the input
    example); `config`: the feature transform's config; `output`: the prediction's name."""
    import mlflow

    names = feature_transforms.feature_names(config)
    with tempfile.TemporaryDirectory() as tmp:
        network_path = export_network(network, len(names), Path(tmp) / NETWORK)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(SERVED_MODEL),
            artifacts={"network": str(network_path), "feature_code": feature_transforms.__file__},
            model_config=config,
            signature=raw_signature(raw, list(feature_transforms.inputs(config)), output),
            input_example=input_example(raw, config["date_column"]),
            # Given, never inferred: inference loads the model in a subprocess (seconds).
            pip_requirements=pip_requirements or default_requirements(),
            metadata={**metadata, "feature_names": names,
                      "input_columns": list(feature_transforms.inputs(config))},
        )


def predict_features(network: nn.Module, features: np.ndarray) -> np.ndarray:
    """`network`'s output on a float32 feature matrix, as float64 (the training path's scoring)."""
    import torch

    with torch.no_grad():
        return network(torch.from_numpy(np.ascontiguousarray(features, np.float32))).numpy()
