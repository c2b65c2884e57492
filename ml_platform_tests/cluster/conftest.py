"""Fixtures of the cluster tests: the local cluster's API (started by `make cluster-up`)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import kubernetes
import pytest

from ml_platform_tests.cluster.local import core_api


@pytest.fixture(scope="session")
def api() -> kubernetes.client.CoreV1Api:
    return core_api()


@pytest.fixture
def run_cli() -> Any:
    """`python -m ml_platform.cli ARGS...` as a user runs it; its stdout."""
    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ml_platform.cli", *args], capture_output=True,
                              text=True, env={**os.environ, "ML_PLATFORM_TRAINING_POD": ""})
        assert done.returncode == 0, done.stderr
        return done.stdout
    return run
