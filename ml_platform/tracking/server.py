"""A real `mlflow server` on loopback for the local profile (SQLite + local artifacts).

Commands get theirs from `tracking.home_server.home_server` (one per home, shared, never
outliving its users); `start_mlflow_server` is the bare process, for tests and benchmarks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ml_platform import settings
from ml_platform.settings import TRACKING_URI_ENV

# A fixed default port keeps the run URLs the demo prints valid under `make dev`.
DEFAULT_PORT = 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until_answering(url: str, timeout: float = 120.0) -> None:
    """Block until the server at `url` answers HTTP at all (any status: a server behind auth
    or without `/health` is up too); a refused connection means it is still starting.
    `timeout=0` tries once. Raises TimeoutError (a transient error) naming the server."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                reason = getattr(exc, "reason", exc)
                waited = f" after {timeout:.0f}s" if timeout else ""
                raise TimeoutError(f"MLflow tracking server {url} is not answering{waited} "
                                   f"({reason}): check that it runs, or set "
                                   f"{TRACKING_URI_ENV}") from exc
            time.sleep(0.2)


@dataclass
class MlflowServer:
    """A child `mlflow server` process; `url` is its tracking URI."""

    url: str
    process: subprocess.Popen[bytes] | None
    log_path: Path | None = None

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_healthy(self.url):
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.process.returncode}; see {self.log_path}"
                )
            time.sleep(0.25)
        raise TimeoutError(f"mlflow server at {self.url} not healthy after {timeout:.0f}s")

    def stop(self, *, graceful: bool = True) -> None:
        """Stop the server if this object started it. `graceful=False` kills it at once: safe
        when no request is in flight (SQLite commits every request), and ~3 s faster."""
        if self.process is None or self.process.poll() is not None:
            return
        # The server runs in its own process group: signal the group so uvicorn goes too.
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait()


def start_mlflow_server(store: Path | None = None, port: int | None = None, *,
                        own_session: bool = True) -> MlflowServer:
    """Start `mlflow server` with a SQLite backend and artifacts under `store`, not waiting
    for it (it takes seconds to answer: start it early, call `wait_ready` when needed).
    `own_session=False` keeps it in the caller's process group (the home server's watchdog
    stops the server and itself with one signal to the group)."""
    store = store or settings.mlflow_dir()
    store.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = store / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    # The server's background job runners (a handful of ~250 MB processes) serve GenAI
    # features this platform does not use.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=own_session
        )
    return MlflowServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)

