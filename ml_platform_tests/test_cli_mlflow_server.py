"""The CLI's MLflow server (`ml-platform demo` through `tracking.home_server`): with an
unrelated `mlflow server` answering on the requested port, `demo` in a fresh home writes
nothing into it (it says which port it used instead), and when `demo` returns no server of
the home is left running. Real processes throughout: the unrelated server, the CLI as a
child process, its MLflow server and the training; nothing is faked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ml_platform.tracking.home_server import HomeFiles, port_is_free
from ml_platform.tracking.server import free_port, is_healthy, start_mlflow_server


@pytest.mark.integration
def test_demo_never_writes_into_an_unrelated_server(tmp_path: Path) -> None:
    port = free_port()
    unrelated = start_mlflow_server(store=tmp_path / "unrelated", port=port)
    try:
        unrelated.wait_ready(timeout=180)
        home = tmp_path / "home"
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",
                                                                 "DAGSTER_HOME")}
        env["ML_PLATFORM_HOME"] = str(home)
        done = subprocess.run(
            [sys.executable, "-m", "ml_platform.cli", "demo", "--days", "3",
             "--model", "listing_price", "--mlflow-port", str(port)],
            env=env, capture_output=True, text=True, timeout=600)
        assert f"port {port} is in use by another server" in done.stderr, done.stderr[-3000:]
        assert "listing_price" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
        client = MlflowClient(unrelated.url, registry_uri=unrelated.url)
        assert [e.name for e in client.search_experiments()] == ["Default"]
        assert client.search_registered_models() == []
        assert is_healthy(unrelated.url)
        # The home's own server got the runs, and is gone with the command.
        files = HomeFiles.of(home)
        assert files.read_record() is None and files.live_leases() == []
        assert (files.root / "mlflow.db").exists()
    finally:
        unrelated.stop(graceful=False)
    deadline = time.monotonic() + 15  # the killed server's socket closes with its last child
    while not port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert port_is_free(port)
