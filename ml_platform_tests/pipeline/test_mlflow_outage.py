"""An MLflow server killed mid-training: `ingest` fails the training step within two minutes
(the client's bounded retries, no step retry of a dead server) with a first error line that
names the server; once the server is back, the next `ingest` takes the same days up again and
trains on them. A real MLflow server of this module's own (the one killed and restarted), a
real SQLite Dagster instance and the real training process; nothing is faked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ml_platform.ops.execute import ingest
from ml_platform.pipeline.build import build_definitions
from ml_platform.storage.landing import LandingZone
from ml_platform.tracking.server import MlflowServer, start_mlflow_server
from ml_platform_tests.pipeline.conftest import DAYS, Platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outage_mlflow")


@pytest.fixture(scope="module")
def mlflow_server(mlflow_store: Path) -> Iterator[MlflowServer]:
    """This module's own server (the session's is shared and must not be killed)."""
    server = start_mlflow_server(store=mlflow_store)
    server.wait_ready(timeout=180)
    yield server
    server.stop(graceful=False)


def _kill_when_a_run_starts(server: MlflowServer, killed: dict[str, float]) -> None:
    client = MlflowClient(server.url)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            experiments = [e.experiment_id for e in client.search_experiments()]
            if experiments and client.search_runs(experiments):
                time.sleep(1)  # the training is under way: its first epochs are logging
                server.stop(graceful=False)
                killed["at"] = time.monotonic()
                return
        except Exception:
            pass
        time.sleep(0.2)


def test_a_killed_server_fails_fast_naming_it_and_the_next_ingest_trains(
        platform: Platform, mlflow_server: MlflowServer, mlflow_store: Path) -> None:
    killed: dict[str, float] = {}
    watcher = threading.Thread(target=_kill_when_a_run_starts, args=(mlflow_server, killed))
    watcher.start()
    defs = build_definitions([platform.spec])
    report = ingest(defs, platform.spec.dataset, platform.instance, LandingZone())
    ended = time.monotonic()
    watcher.join()
    assert "at" in killed and not report["success"]
    assert ended - killed["at"] < 120, f"the step took {ended - killed['at']:.0f}s to fail"
    first = report["failed_steps"][0]["error"].splitlines()[0]
    assert mlflow_server.url.removeprefix("http://") in first, first

    back = start_mlflow_server(store=mlflow_store, port=int(mlflow_server.url.rsplit(":", 1)[1]))
    try:
        back.wait_ready(timeout=180)
        again = ingest(defs, platform.spec.dataset, platform.instance, LandingZone())
        assert again["success"], again["failed_steps"]
        assert len(again["days"]) == DAYS and platform.production() == "1"
    finally:
        back.stop(graceful=False)
