"""Real process faults during training: the training process SIGKILLed mid-run and retried
(it resumes from its last checkpoint in the same MLflow run, every metric step logged exactly
once), and the MLflow server killed mid-training and brought back on the same store (training
rides it out and finishes); the entrypoint stopped by SIGTERM keeps its newest checkpoint in the
mirror and a retry on an empty disk resumes from it. Real processes, real servers; nothing is
faked (the checkpoint mirror is a local folder where a pod's would be S3). Training is slowed
down with a tiny batch so there is an epoch to kill it in."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ml_platform.compute.request import TrainingRequest
from ml_platform.ml import checkpoint as checkpoints
from ml_platform.tracking.server import MlflowServer, free_port, start_mlflow_server
from ml_platform_tests.data import booking_training_set

pytestmark = pytest.mark.integration  # starts real servers

EPOCHS = 40
RUN = """
import json, sys
from ml_platform.compute.entrypoint import run_training
from ml_platform.compute.request import TrainingRequest
summary = run_training(TrainingRequest.from_extras(json.loads(sys.argv[1])))
print(json.dumps({k: v for k, v in summary.items() if isinstance(v, int | float | str)}))
"""


def _training_set(tmp_path: Path) -> str:
    path = tmp_path / "training_set.parquet"
    booking_training_set(dt.date(2026, 5, 1), days=4, rows=600, seed=1).to_parquet(path, index=False)
    return str(path)


def _request(tmp_path: Path, url: str) -> TrainingRequest:
    client = MlflowClient(url)
    experiment = client.create_experiment(f"faults-{tmp_path.name}-{time.time_ns()}")
    run_id = client.create_run(experiment).info.run_id
    return TrainingRequest(
        model="faults", task="regression", feature_builder="bookings", target="nightly_price",
        training_set_uri=_training_set(tmp_path), mlflow_run_id=run_id,
        checkpoint_dir=str(tmp_path / "checkpoints"), hidden=[64, 64], epochs=EPOCHS,
        batch_size=8, learning_rate=1e-3, seed=3,
    )


def _start(request: TrainingRequest, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    return subprocess.Popen([sys.executable, "-c", RUN, json.dumps(request.to_extras())],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _checkpoint_epoch(request: TrainingRequest) -> int:
    path = checkpoints.latest(Path(request.checkpoint_dir))
    try:  # the writer may replace it between the lookup and the read: then look again
        return int(checkpoints.read(path)["epoch"]) if path else 0
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def _wait(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _finish(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_killed_training_resumes_in_the_same_run(tmp_path: Path,
                                                 mlflow_server: MlflowServer) -> None:
    request = _request(tmp_path, mlflow_server.url)
    first = _start(request, mlflow_server.url)
    _wait(lambda: _checkpoint_epoch(request) >= 5, first)
    first.send_signal(signal.SIGKILL)  # mid-epoch, async metrics possibly undelivered
    first.wait()
    killed_at = _checkpoint_epoch(request)
    assert 5 <= killed_at < EPOCHS

    summary = _finish(_start(request, mlflow_server.url))  # the retry, same request and run

    assert summary["resumed_from_epoch"] >= killed_at
    client = MlflowClient(mlflow_server.url)
    for metric in ("valid_mae", "train_loss"):
        steps = sorted(m.step for m in client.get_metric_history(request.mlflow_run_id, metric))
        assert steps == list(range(1, EPOCHS + 1)), metric  # none missing, none twice
    run = client.get_run(request.mlflow_run_id)
    assert run.data.tags["ml_platform.model_uri"] == summary["model_uri"]
    assert summary["test_mae"] < 12


def test_training_rides_out_a_restarted_tracking_server(tmp_path: Path) -> None:
    store, port = tmp_path / "mlflow", free_port()
    server: MlflowServer = start_mlflow_server(store=store, port=port)
    server.wait_ready()
    request = _request(tmp_path, server.url)
    training = _start(request, server.url)
    try:
        _wait(lambda: _checkpoint_epoch(request) >= 3, training)
        server.stop(graceful=False)  # the tracking server dies mid-training
        time.sleep(3)
        assert training.poll() is None  # training goes on meanwhile
        server = start_mlflow_server(store=store, port=port)  # back, on the same store
        summary = _finish(training)
    finally:
        training.kill()
        server.stop()
    server = start_mlflow_server(store=store, port=port)
    try:
        server.wait_ready()
        client = MlflowClient(server.url)
        run = client.get_run(request.mlflow_run_id)
        assert run.data.tags["ml_platform.model_uri"] == summary["model_uri"]
        steps = sorted(m.step for m in client.get_metric_history(request.mlflow_run_id, "valid_mae"))
        assert steps == list(range(1, EPOCHS + 1))
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def test_sigterm_stops_training_with_its_newest_checkpoint_mirrored(tmp_path: Path) -> None:
    """SIGTERM (a deleted pod's, a drained node's) to `python -m ml_platform.compute.entrypoint`:
    it stops at once with `Preempted`, after its newest checkpoint reached the mirror (a local
    folder standing for S3 here), and a retry on an empty disk resumes from that epoch."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    request = TrainingRequest(
        model="faults", task="regression", feature_builder="bookings", target="nightly_price",
        training_set_uri=_training_set(tmp_path), mlflow_run_id="untracked",
        checkpoint_dir=str(tmp_path / "checkpoints"), checkpoint_mirror=str(mirror),
        hidden=[64, 64], epochs=EPOCHS, batch_size=8, learning_rate=1e-3, seed=3)
    (tmp_path / "request.json").write_text(json.dumps(request.to_extras()))

    def entrypoint(output: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "ml_platform.compute.entrypoint", "--request",
             str(tmp_path / "request.json"), "--output", str(tmp_path / output)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = entrypoint("first.json")
    _wait(lambda: _checkpoint_epoch(request) >= 3, first)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode != 0 and "Preempted: training stopped by SIGTERM" in err, err[-2000:]
    newest = checkpoints.latest(Path(request.checkpoint_dir))
    assert newest is not None
    stopped_at = int(checkpoints.read(newest)["epoch"])
    assert 3 <= stopped_at < EPOCHS
    assert sorted(p.name for p in mirror.glob("epoch-*.pt")) == [newest.name]

    for path in Path(request.checkpoint_dir).iterdir():  # the retry's pod has a fresh disk
        path.unlink()
    second = entrypoint("second.json")
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    summary = json.loads((tmp_path / "second.json").read_text())
    assert summary["resumed_from_epoch"] == stopped_at and summary["epochs"] == EPOCHS
