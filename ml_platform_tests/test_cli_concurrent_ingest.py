"""Two `ml-platform ingest` commands at once on one home (the CLI as real processes, with the
home's own MLflow server they share): both finish successfully, the days are trained on once
(one training run, one model version), and no process of either is left. Timing (both within
1.5x one alone) is measured by `benchmarks/concurrent_ingest.py`, not asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from ml_platform.specs.model_spec import SPEC_DIR
from ml_platform.tracking.home_server import HomeFiles
from ml_platform.tracking.server import free_port

pytestmark = pytest.mark.integration


def _env(home: Path) -> dict[str, str]:
    specs = home / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load((SPEC_DIR / "listing_price.yaml").read_text())
    spec["training"]["epochs"] = 3
    (specs / "listing_price.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    return {**env, "ML_PLATFORM_HOME": str(home), "ML_PLATFORM_SPEC_DIR": str(specs)}


def test_two_ingests_at_once_train_once_and_both_succeed(tmp_path: Path) -> None:
    env, port = _env(tmp_path / "home"), free_port()
    cli = [sys.executable, "-m", "ml_platform.cli"]
    subprocess.run([*cli, "simulate", "--dataset", "bookings", "--days", "4",
                    "--mlflow-port", str(port)], env=env, check=True, capture_output=True, timeout=300)
    both = [subprocess.Popen([*cli, "ingest", "--json", "--mlflow-port", str(port)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [p.communicate(timeout=900) for p in both]
    assert [p.returncode for p in both] == [0, 0], [err[-2000:] for _, err in outputs]

    # the home's server is gone with the commands; read its store with a fresh one
    files = HomeFiles.of(tmp_path / "home")
    assert files.read_record() is None and files.live_leases() == []
    from ml_platform.tracking.server import start_mlflow_server

    server = start_mlflow_server(store=files.root)
    try:
        server.wait_ready(timeout=180)
        client = MlflowClient(server.url, registry_uri=server.url)
        assert [mv.version for mv in client.search_model_versions("name = 'listing_price'")] == ["1"]
        experiments = [e.experiment_id for e in client.search_experiments()]
        trainings = client.search_runs(experiments, "attributes.status = 'FINISHED'")
        assert len(trainings) == 1, [r.info.run_name for r in trainings]
    finally:
        server.stop(graceful=False)
