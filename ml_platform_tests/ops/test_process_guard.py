"""Nothing a command started outlives it, SIGKILL included (`ops.process_guard`): a guarded
command and its own child are stopped when their owner is killed; `ml-platform dev` killed
with SIGKILL leaves no `dagster dev`, webserver, daemon, code server or MLflow server behind.
Real processes throughout; nothing is faked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ml_platform.ops.process_guard import guarded_command
from ml_platform.tracking.server import free_port, is_healthy

SLEEPER = ("import subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)")


def _gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes of `processes` still running after `timeout` seconds."""
    _, left = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_guarded_command_and_its_children_stop_with_their_owner() -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    guard = subprocess.Popen(guarded_command([sys.executable, "-c", SLEEPER], owner=owner.pid),
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(psutil.Process(guard.pid).children(recursive=True)) < 2:
            assert time.monotonic() < deadline, "the guarded command did not start its child"
            time.sleep(0.2)
        started = [psutil.Process(guard.pid), *psutil.Process(guard.pid).children(recursive=True)]
        owner.kill()
        owner.wait()
        assert _gone(started, timeout=40) == []
    finally:
        for p in (owner, guard):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL) if p is guard else p.kill()


@pytest.mark.integration
def test_a_sigkilled_dev_leaves_no_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    env["ML_PLATFORM_HOME"] = str(tmp_path / "home")
    mlflow_port, port = free_port(), free_port()
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "ml_platform.cli", "dev", "--port", str(port),
         "--mlflow-port", str(mlflow_port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        started: list[psutil.Process] = []
        while not (is_healthy(f"http://127.0.0.1:{mlflow_port}")
                   and any("dagster._daemon" in " ".join(p.cmdline()) or "dagster-daemon" in
                           " ".join(p.cmdline()) for p in started)):
            assert dev.poll() is None and time.monotonic() < deadline, (
                (tmp_path / "dev.log").read_text()[-3000:])
            time.sleep(1)
            started = psutil.Process(dev.pid).children(recursive=True)
        time.sleep(2)  # let the webserver and code server come up too
        started = psutil.Process(dev.pid).children(recursive=True)
        dev.kill()
        dev.wait()
        left = _gone(started, timeout=90)
        assert left == [], [" ".join(p.cmdline())[:200] for p in left]
    finally:
        if dev.poll() is None:
            dev.kill()
        log.close()
