"""The registered model's code (MLflow models-from-code): raw rows in, predictions out.

MLflow logs this file as the model and runs it where the model loads: it needs MLflow, pandas,
numpy and torch, not ml_platform. It loads `feature_transforms.py`, the training path's own
feature code, from the model's artifacts (`feature_code`), reads the transform's config from
the model's `model_config`, and loads the network, a torch.export program (`network.pt2`:
graph and weights, no pickled objects). Rows are checked against the model's
signature by MLflow before `predict` sees them, and again by the transform (so a direct caller
gets an error naming the column too).

Not imported by ml_platform: loading it from its path is what MLflow does.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class RawRowsModel(PythonModel):
    """Applies the training feature code to raw rows, then the exported network."""

    def load_context(self, context: PythonModelContext) -> None:
        import importlib.util

        import torch

        # This model's own copy of the feature code, loaded from its file under a name of its
        # own: an import by module name would share one module between all the models a
        # process loads (a candidate and an older champion, whose feature code may differ).
        path = context.artifacts["feature_code"]
        spec = importlib.util.spec_from_file_location(f"_feature_transforms_{id(self)}", path)
        assert spec is not None and spec.loader is not None, path
        self.transforms = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.transforms)
        self.config: dict[str, Any] = dict(context.model_config)
        self.network = torch.export.load(context.artifacts["network"]).module()

    def features(self, rows: pd.DataFrame) -> np.ndarray:
        """The float32 feature matrix of `rows`, exactly as training computed it. Bad rows
        raise an MlflowException naming the column: a 400 from a scoring server, not a 500."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            return self.transforms.transform(rows, self.config)
        except ValueError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(self.features(model_input)))
        with torch.no_grad():
            return self.network(x).numpy().astype(np.float64)


mlflow.models.set_model(RawRowsModel())
