"""One model version behind MLflow's own scoring server: download, start, check, stop.

The process is exactly what `mlflow models serve -m <uri> --env-manager local` runs (MLflow's
`scoring_server.get_cmd`: uvicorn with `mlflow.pyfunc.scoring_server.app:app` and the model's
local path in its environment), started here rather than through the CLI so that the download
happens once into the home (a rollback to a version served before starts without it) and the
model's input example is at hand for the check before it takes traffic.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ml_platform.tracking.scoring import download_model
from ml_platform.tracking.server import free_port

START_TIMEOUT_S = 180.0
"""A version that does not answer `/ping` within this long fails to load."""


class BackendError(RuntimeError):
    """A model version could not be served; the message says why in one line."""


def model_uri(model: str, version: str) -> str:
    return f"models:/{model}/{version}"


def download(model: str, version: str, cache: Path) -> Path:
    """The model version's files under `cache/<model>/<version>` (downloaded once)."""
    import mlflow

    target = cache / model / version
    if (target / "MLmodel").exists():
        return target
    partial = target.with_name(f"{version}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        local = download_model(model_uri(model, version), mlflow.get_tracking_uri(), partial)
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendError(f"{model} v{version} could not be downloaded: {first}") from exc
    shutil.rmtree(target, ignore_errors=True)
    local.rename(target)  # `partial` itself, or the folder the files came in under it
    shutil.rmtree(partial, ignore_errors=True)
    return target


def serving_input(local_path: Path) -> str:
    """The request body of the model's input example, in MLflow's scoring protocol."""
    from mlflow.models import Model

    body = Model.load(str(local_path)).get_serving_input(str(local_path))
    if body is None:
        raise BackendError(f"the model at {local_path} was logged without an input example")
    return body


@dataclass
class Backend:
    """A running MLflow scoring server of one model version on a loopback port."""

    model: str
    version: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    example: str
    in_flight: int = field(default=0)

    def post(self, path: str, body: bytes, content_type: str = "application/json",
             timeout: float = 30.0) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{self.url}{path}", data=body, method="POST",
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def check(self) -> None:
        """The input example must come back with one prediction per row."""
        status, body = self.post("/invocations", self.example.encode())
        if status != 200:
            raise BackendError(f"{self.model} v{self.version} did not answer its input example: "
                               f"HTTP {status} {_first(body.decode(errors='replace'))}")
        rows = len(json.loads(self.example).get("dataframe_split", {}).get("data", []))
        predictions = json.loads(body).get("predictions")
        if not isinstance(predictions, list) or (rows and len(predictions) != rows):
            raise BackendError(f"{self.model} v{self.version} answered its input example of {rows} "
                               f"row(s) with {_first(body.decode(errors='replace'))}")

    def stop(self) -> None:
        """Stop the server (its whole process group: uvicorn's workers go too)."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start(model: str, version: str, cache: Path, *, timeout: float = START_TIMEOUT_S) -> Backend:
    """Download, start and check `model` v`version`; on any failure nothing is left running
    and BackendError says why (the server's last log line when it died)."""
    from mlflow.pyfunc import scoring_server

    local = download(model, version, cache)
    example = serving_input(local)
    port = free_port()
    # MLflow annotates `host` as an int; it is the host name `mlflow models serve` passes.
    command, env = scoring_server.get_cmd(str(local), port, "127.0.0.1", None, 1)  # type: ignore[arg-type]
    argv = [sys.executable, "-m", *shlex.split(command)]  # `uvicorn ...` from this interpreter
    log_path = cache / model / f"{version}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    backend = Backend(model, version, f"http://127.0.0.1:{port}", process, log_path, example)
    try:
        _wait_ping(backend, timeout)
        backend.check()
    except BaseException:
        backend.stop()
        raise
    return backend


def _wait_ping(backend: Backend, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if backend.process.poll() is not None:
            raise BackendError(f"{backend.model} v{backend.version} failed to load: "
                               f"{_last_error(backend.log_path)} (log: {backend.log_path})")
        try:
            with urllib.request.urlopen(f"{backend.url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise BackendError(f"{backend.model} v{backend.version} did not answer /ping within "
                               f"{timeout:.0f}s (log: {backend.log_path})")
        time.sleep(0.2)


def _last_error(log_path: Path) -> str:
    """The exception line of a dead server's log (the last line that names an error)."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()
             if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["the scoring server exited"])[-1][:300]


def _first(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
