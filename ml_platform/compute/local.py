"""The local compute backend: the training entrypoint as a child process (Dagster Pipes)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import dagster as dg

from ml_platform.compute.code_package import CodeStore
from ml_platform.compute.request import ENTRYPOINT, TrainingRequest
from ml_platform.compute.trainer import Trainer
from ml_platform.ml.distributed import threads_per_process

__all__ = ["ENTRYPOINT", "LocalProcessTrainer"]


class LocalProcessTrainer(Trainer):
    """Runs `python -m ml_platform.compute.entrypoint` beside the orchestrator, the same
    entrypoint a Kubernetes pod runs, and returns what it reported.

    A request for several processes (or nodes) runs them all here under `torchrun`: the same
    DDP code path as a multi-GPU pod, on CPU processes (gloo) when there is no GPU per process.
    Only rank 0 talks to Pipes, so the orchestrator sees one process either way."""

    python: str | None = None  # default: the orchestrator's own interpreter

    def train(self, context: dg.AssetExecutionContext, request: TrainingRequest,
              env: dict[str, str], code_store: CodeStore | None = None) -> dict[str, Any]:
        # The orchestrator's own code and interpreter: nothing to ship. One machine here: the
        # nodes' processes all run on it.
        local = dataclasses.replace(request, processes=request.world_size, nodes=1)
        env = dict(env)
        if local.world_size > 1:
            # Each rank's share of this machine's CPUs (torchrun would otherwise set 1 and warn).
            env.setdefault("OMP_NUM_THREADS", str(threads_per_process(local.world_size)))
        client = dg.PipesSubprocessClient()
        return self.reported(client.run(
            context=context,
            command=local.command(self.python or sys.executable),
            extras=local.to_extras(),
            env=env,
        ))
