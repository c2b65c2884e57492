"""The local compute backend: the training entrypoint as a child process (Dagster Pipes)."""

from __future__ import annotations

import sys
from typing import Any

import dagster as dg

from ml_platform.compute.request import TrainingRequest

ENTRYPOINT = "ml_platform.compute.entrypoint"


class LocalProcessTrainer(dg.ConfigurableResource):
    """Runs `python -m ml_platform.compute.entrypoint` beside the orchestrator, the same
    entrypoint a Kubernetes pod runs, and returns what it reported."""

    python: str | None = None  # default: the orchestrator's own interpreter

    def train(self, context: dg.AssetExecutionContext, request: TrainingRequest,
              env: dict[str, str]) -> dict[str, Any]:
        client = dg.PipesSubprocessClient()
        invocation = client.run(
            context=context,
            command=[self.python or sys.executable, "-m", ENTRYPOINT],
            extras=request.to_extras(),
            env=env,
        )
        result = invocation.get_materialize_result()
        return {k: getattr(v, "value", v) for k, v in (result.metadata or {}).items()}
