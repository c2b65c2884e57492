"""Shared fixtures: a real `mlflow server` process for the session, a fresh state home per
module. Every test that uses a fixture starting a server is marked `integration` here (modules
that start servers themselves carry the mark); `make test-fast` runs the rest. Nothing is
faked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_platform.tracking.server import MlflowServer, start_mlflow_server
from ml_platform_tests.services import env

# Fixtures that start a real server (directly or through another fixture).
SERVER_FIXTURES = frozenset({"mlflow_server", "platform_home", "platform"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """No variable a test sets outlives it, whoever set it: MLflow's `set_tracking_uri` and
    `set_registry_uri` write MLFLOW_*_URI into `os.environ`, and a later test's child
    processes (the CLI, a daemon) would otherwise talk to this test's server."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server (SQLite + local artifacts) on a free loopback port."""
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # keeps failure logs legible
    server = start_mlflow_server(store=tmp_path_factory.mktemp("mlflow"))
    try:
        server.wait_ready(timeout=180)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def platform_home(tmp_path_factory: pytest.TempPathFactory,
                  mlflow_server: MlflowServer) -> Iterator[Path]:
    """ML_PLATFORM_HOME, DAGSTER_HOME and MLFLOW_TRACKING_URI for one test module."""
    home = tmp_path_factory.mktemp("home")
    with env(ML_PLATFORM_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
             MLFLOW_TRACKING_URI=mlflow_server.url):
        yield home
