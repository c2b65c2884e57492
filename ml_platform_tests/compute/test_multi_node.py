"""Multi-node training as the Kubernetes backend submits it, run here: the exact commands of
node 0's pod and of the worker Job's pod (`ml_platform.compute.k8s`), each in its own process
group with the Job's `JOB_COMPLETION_INDEX`, meet by torchrun's static rendezvous and train one
DDP model; node 0 reports through Dagster Pipes and logs to a real MLflow server, the worker
only trains. Both start through `code_sync`, which fetches the step's code package from the S3
lake and runs the training from it. Its metrics match one process's within the DDP tolerances.

Changed from the pods: `python` is this interpreter, the rendezvous Service's DNS name is
loopback (on a free port), checkpoints go to a temporary folder. Faked: S3 (moto's server)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from mlflow import MlflowClient

from ml_platform.compute import code_package
from ml_platform.compute.entrypoint import run_untracked
from ml_platform.compute.k8s import (
    RENDEZVOUS_PORT,
    K8sPodTrainer,
    pod_request,
    rendezvous_name,
    training_pod_spec,
)
from ml_platform.compute.request import TrainingRequest
from ml_platform.specs import load_specs
from ml_platform.storage.s3 import S3Lake
from ml_platform.tracking.server import MlflowServer, free_port
from ml_platform_tests.data import booking_training_set
from ml_platform_tests.services import moto_s3

EPOCHS = 4


def _local(command: list[str], request: TrainingRequest, port: int) -> list[str]:
    """A pod's command, run here: this Python, the Service's name resolved to loopback."""
    swap = {"python": sys.executable,
            f"--master-addr={rendezvous_name(request)}": "--master-addr=127.0.0.1",
            f"--master-port={RENDEZVOUS_PORT}": f"--master-port={port}"}
    return [swap.get(arg, arg) for arg in command]


@pytest.mark.integration
def test_two_nodes_train_one_model_from_the_rendered_commands(tmp_path: Path,
                                                              mlflow_server: MlflowServer) -> None:
    path = tmp_path / "training_set.parquet"
    booking_training_set(dt.date(2026, 5, 1), days=4, rows=600, seed=1).to_parquet(path, index=False)
    spec = next(s for s in load_specs() if s.name == "listing_price")
    compute = spec.compute.model_copy(update={"nodes": 2, "gpu": 0, "processes_per_node": 1})
    trainer = K8sPodTrainer(compute={spec.name: compute.model_dump(mode="json", exclude_none=True)})

    client = MlflowClient(mlflow_server.url)
    run_id = client.create_run(client.create_experiment(f"multi-node-{tmp_path.name}")).info.run_id
    request = TrainingRequest(
        model=spec.name, task="regression", feature_builder="bookings", target="nightly_price",
        training_set_uri=str(path), mlflow_run_id=run_id, checkpoint_dir="", hidden=[64, 64],
        epochs=EPOCHS, batch_size=128, learning_rate=3e-3, seed=1,
        pip_requirements=["torch", "mlflow"], processes=1, nodes=2,
    )
    request = dataclasses.replace(pod_request(request, attempt="abcdef12-0"),
                                  checkpoint_dir=str(tmp_path / "ckpt"))
    port = free_port()
    with moto_s3() as endpoint:
        lake = S3Lake(s3=S3Resource(endpoint_url=endpoint), bucket="ml-platform-test", prefix="lake")
        code = code_package.ship(lake)
        node0 = _local(training_pod_spec(compute, request, trainer, code, node_rank=0)
                       ["containers"][0]["command"], request, port)
        worker = _local(training_pod_spec(compute, request, trainer, code, node_rank=None)
                        ["containers"][0]["command"], request, port)
        assert worker[:2] == ["sh", "-c"] and "--node-rank=0" in node0
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("DAGSTER_PIPES", "MLFLOW_TRACKING"))}
        base.update(OMP_NUM_THREADS="1", ML_PLATFORM_DEVICE="cpu", HOME=str(tmp_path / "pod"),
                    **code.env)
        result, output, worker_process = _train_two_nodes(node0, worker, request, base,
                                                          mlflow_server)
    assert result.success, output[-3000:]
    assert worker_process.returncode == 0, output[-3000:]
    assert output.count(f"code sync: running code package {code.code_hash[:12]}") == 1

    (event,) = result.get_asset_materialization_events()
    meta = {k: getattr(v, "value", v)
            for k, v in event.event_specific_data.materialization.metadata.items()}
    assert meta["world_size"] == 2 and meta["epochs"] == EPOCHS
    assert meta["ml_platform.code_package"] == code.code_hash  # node 0 ran from the package
    history = client.get_metric_history(run_id, "valid_mae")  # node 0 alone logged
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))

    # One process on the same data: the same optimizer steps (see ml/test_distributed.py).
    single = run_untracked(dataclasses.replace(request, nodes=1, rendezvous=""), checkpoint=False)
    assert single is not None
    assert meta["test_mae"] == pytest.approx(single["test_mae"], rel=0.03)
    assert meta["final_valid_mae"] == pytest.approx(single["final_valid_mae"], rel=0.02)


def _train_two_nodes(node0: list[str], worker: list[str], request: TrainingRequest,
                     base: dict[str, str], mlflow_server: MlflowServer
                     ) -> tuple[dg.ExecuteInProcessResult, str, subprocess.Popen[str]]:
    """Node 0 as the `trained` step's Pipes process, the worker beside it: the step's result,
    the worker's output, the worker process (finished)."""
    # The worker pod: no Pipes channel, no tracking server; its index in the Job is 0.
    worker_process = subprocess.Popen(worker, env={**base, "JOB_COMPLETION_INDEX": "0"},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True)  # its ranks die with it below

    @dg.asset(key=[request.model, "trained"])
    def trained(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
        invocation = dg.PipesSubprocessClient().run(
            context=context, command=node0, extras=request.to_extras(),
            env={**base, "MLFLOW_TRACKING_URI": mlflow_server.url})
        return invocation.get_materialize_result()

    try:
        result = dg.materialize([trained], instance=dg.DagsterInstance.ephemeral(),
                                raise_on_error=False)
        output, _ = worker_process.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker_process.pid, signal.SIGKILL)
    return result, output, worker_process
