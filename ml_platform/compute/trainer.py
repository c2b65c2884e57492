"""The compute backend's contract with the `trained` asset."""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_platform.compute.code_package import CodeStore
from ml_platform.compute.request import TrainingRequest


def training_env(tracking_uri: str) -> dict[str, str]:
    """The variables the `trained` step gives every training process or pod (and what
    `ml-platform k8s render` shows): its MLflow server."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        # MLflow prints run URLs as given, credentials included: links go in metadata.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }


class Trainer(dg.ConfigurableResource):
    """Runs the training entrypoint for a request, wherever the backend puts it, and returns
    what its rank 0 reported over Dagster Pipes (the run's summary: model URI, metrics)."""

    def train(self, context: dg.AssetExecutionContext, request: TrainingRequest,
              env: dict[str, str], code_store: CodeStore | None = None) -> dict[str, Any]:
        """`code_store`: where a backend that runs elsewhere puts the code it ships (the lake)."""
        raise NotImplementedError

    @staticmethod
    def reported(invocation: dg.PipesClientCompletedInvocation) -> dict[str, Any]:
        """The metadata the entrypoint reported, as plain values."""
        result = invocation.get_materialize_result()
        return {k: getattr(v, "value", v) for k, v in (result.metadata or {}).items()}
