"""The training entrypoint's distributed path: the launch command a request asks for (one
process, torchrun on one node, torchrun across nodes), two ranks under a real `torchrun`
training end to end without Pipes or MLflow to the metrics of one in-process run, and the local
backend running two ranks through Dagster Pipes against a real MLflow server, where rank 0
alone reports: one materialization, one metric per epoch, one logged model, the usage of both
ranks. Real processes,
real torch.distributed (gloo on CPU), a real MLflow server; nothing is faked."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import torch

from ml_platform.compute.entrypoint import run_untracked
from ml_platform.compute.local import LocalProcessTrainer
from ml_platform.compute.request import ENTRYPOINT, TrainingRequest
from ml_platform.ml import checkpoint as checkpoints
from ml_platform.ml.features import build_features
from ml_platform.ml.training_set import make_training_set
from ml_platform.simulation.bookings import generate_bookings
from ml_platform.tracking.server import MlflowServer

EPOCHS = 4


@pytest.fixture(scope="module")
def training_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days of 700 generated bookings as a frozen training-set parquet."""
    raw = pd.concat([generate_bookings(dt.date(2024, 5, 1) + dt.timedelta(days=i), 700)
                     for i in range(4)], ignore_index=True)
    feats = build_features("bookings", raw, key="booking_id", date_column="booking_date",
                           target="nightly_price")
    path = tmp_path_factory.mktemp("ts") / "training_set.parquet"
    make_training_set(feats, key="booking_id", valid_fraction=0.15, test_fraction=0.15,
                      seed=7).to_parquet(path)
    return path


def _request(training_set: Path, checkpoint_dir: Path, **changes: object) -> TrainingRequest:
    fields: dict[str, object] = dict(
        model="m", task="regression", feature_builder="bookings", target="nightly_price",
        training_set_uri=str(training_set), mlflow_run_id="none", checkpoint_dir=str(checkpoint_dir),
        hidden=[64, 64], epochs=EPOCHS, batch_size=128, learning_rate=3e-3, seed=1,
    )
    return TrainingRequest(**{**fields, **changes})  # type: ignore[arg-type]


def _env() -> dict[str, str]:
    """This environment without any tracking server or Pipes channel."""
    drop = ("MLFLOW_TRACKING_URI", "DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES")
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_launch_command_per_request(tmp_path: Path) -> None:
    one = _request(tmp_path, tmp_path)
    assert one.command("py") == ["py", "-m", ENTRYPOINT]
    two = _request(tmp_path, tmp_path, processes=2)
    assert two.world_size == 2
    assert two.command("py") == ["py", "-m", "torch.distributed.run", "--nproc-per-node=2",
                                 "--nnodes=1", "--standalone", "-m", ENTRYPOINT]
    nodes = _request(tmp_path, tmp_path, processes=4, nodes=2, mlflow_run_id="r1")
    assert nodes.world_size == 8
    with pytest.raises(ValueError, match="need a rendezvous"):
        nodes.command("py")
    nodes = dataclasses.replace(nodes, rendezvous="train-r1:29500")
    assert nodes.command("py", node_rank=1)[2:] == [
        "torch.distributed.run", "--nproc-per-node=4", "--nnodes=2", "--node-rank=1",
        "--master-addr=train-r1", "--master-port=29500", "--rdzv-conf=timeout=1800", "-m",
        ENTRYPOINT]
    assert "--node-rank" not in " ".join(nodes.command("py", node_rank=None))
    with pytest.raises(ValueError, match=">= 1"):
        _request(tmp_path, tmp_path, processes=0)
    # Requests from before `processes` existed still parse: one process.
    extras = {k: v for k, v in one.to_extras().items() if k not in ("processes", "nodes")}
    assert TrainingRequest.from_extras(extras).world_size == 1


@pytest.mark.integration  # real processes
def test_two_ranks_under_torchrun_train_like_one_process(training_set: Path, tmp_path: Path) -> None:
    request = _request(training_set, tmp_path / "ddp", processes=2)
    (tmp_path / "request.json").write_text(json.dumps(request.to_extras()))
    out = tmp_path / "summary.json"
    subprocess.run(
        [*request.command(sys.executable), "--request", str(tmp_path / "request.json"),
         "--output", str(out)],
        check=True, env={**_env(), "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    ddp = json.loads(out.read_text())
    single = run_untracked(_request(training_set, tmp_path / "single"), checkpoint=False)
    assert single is not None

    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["device"] == "cpu" or torch.cuda.device_count() >= 2
    assert ddp["epochs"] == EPOCHS and len(ddp["history"]) == EPOCHS
    assert ddp["train_samples_per_second"] > 0
    # See ml_platform_tests/ml/test_distributed.py for why these tolerances.
    for got, want in zip(ddp["history"], single["history"], strict=True):
        assert got == pytest.approx(want, rel=0.02)
    assert ddp["test_mae"] == pytest.approx(single["test_mae"], rel=0.03)
    assert checkpoints.latest(tmp_path / "ddp") == checkpoints.path_for(tmp_path / "ddp", EPOCHS)
    assert not (tmp_path / "single").exists()  # checkpoint=False writes nothing


@pytest.mark.integration
def test_local_trainer_runs_two_ranks_through_pipes(training_set: Path, tmp_path: Path,
                                                    mlflow_server: MlflowServer) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment(f"ddp-pipes-{os.getpid()}-{tmp_path.name}")
    run_id = client.create_run(experiment).info.run_id
    request = _request(training_set, tmp_path / "ckpt", processes=2, mlflow_run_id=run_id,
                       pip_requirements=["torch", "mlflow"])

    @dg.asset
    def trained(context, trainer: LocalProcessTrainer) -> dg.MaterializeResult:
        summary = trainer.train(context, request, env={"MLFLOW_TRACKING_URI": mlflow_server.url})
        return dg.MaterializeResult(metadata={k: v for k, v in summary.items()
                                              if isinstance(v, int | float | str)})

    result = dg.materialize([trained], resources={"trainer": LocalProcessTrainer()},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    events = result.get_asset_materialization_events()
    assert len(events) == 1
    meta = {k: getattr(v, "value", v) for k, v in
            events[0].event_specific_data.materialization.metadata.items()}
    assert meta["world_size"] == 2
    assert meta["epochs"] == EPOCHS
    # The other rank's usage reaches rank 0's record (gathered after training).
    assert meta["usage.processes"] == 2 and meta["usage.cpu_seconds"] > 0
    assert meta["test_mae"] < 15

    run = client.get_run(run_id)
    assert run.data.params["world_size"] == "2"
    assert run.data.tags["ml_platform.model_uri"] == meta["model_uri"]
    # Rank 0 alone logs: one point per epoch, not one per rank.
    history = client.get_metric_history(run_id, "valid_mae")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
    assert checkpoints.latest(tmp_path / "ckpt") == checkpoints.path_for(tmp_path / "ckpt", EPOCHS)
