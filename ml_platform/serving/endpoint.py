"""The hand-off between the long-running `ml-platform serve` and whoever moves production.

`serve` writes `<home>/serving/endpoint.json` (its URL, pid and start time) once it listens and
removes it when it stops. The `serving` asset (and `promote`/`rollback`) finds the endpoint
there and asks it to switch with one HTTP request to its loopback admin route, which answers
when the new version serves or with the reason it does not: the step's outcome is the
switch's, with nothing to poll. When no `serve` runs, the desired version is only recorded
(the serving manifest in the lake), and `serve` starts with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ml_platform import names, settings
from ml_platform.tracking.home_server import process_start

ENDPOINT_FILE = "endpoint.json"
SWITCH_TIMEOUT_S = 600.0


class EndpointError(RuntimeError):
    """The endpoint did not switch; the message says why in one line."""


@dataclass(frozen=True)
class Endpoint:
    """A running `ml-platform serve` of this home."""

    url: str
    pid: int
    started_at: float

    def invocations_url(self, model: str) -> str:
        return f"{self.url}{names.invocations_path(model)}"

    def models(self) -> list[dict[str, Any]]:
        """Each model, the version it answers with and its state (`GET /models`)."""
        with urllib.request.urlopen(f"{self.url}/models", timeout=10) as response:
            return list(json.loads(response.read())["models"])

    def switch(self, model: str, version: str, timeout: float = SWITCH_TIMEOUT_S) -> dict[str, Any]:
        """Make `model` answer with `version`; returns when it does. Raises EndpointError,
        the old version still serving, when the new one does not load or answer."""
        request = urllib.request.Request(
            f"{self.url}/admin/models/{model}", data=json.dumps({"version": version}).encode(),
            method="PUT", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", "")
            except ValueError:
                message = f"HTTP {exc.code}"
            raise EndpointError(f"the endpoint {self.url} still serves its previous version of "
                                f"{model}: {message}") from exc
        except OSError as exc:
            raise EndpointError(f"the endpoint {self.url} (pid {self.pid}) did not answer the "
                                f"switch of {model} to v{version}: {exc}") from exc


def endpoint_file(home: Path | None = None) -> Path:
    return (home / "serving" if home else settings.serving_dir()) / ENDPOINT_FILE


def write_endpoint(url: str, home: Path | None = None) -> Endpoint:
    """Record this process as the home's endpoint (atomically: a reader never sees half)."""
    path = endpoint_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    endpoint = Endpoint(url=url, pid=os.getpid(), started_at=time.time())
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(endpoint)))
    partial.replace(path)
    return endpoint


def remove_endpoint(endpoint: Endpoint, home: Path | None = None) -> None:
    """Remove the record if it is still `endpoint`'s."""
    if running_endpoint(home) == endpoint:
        with contextlib.suppress(FileNotFoundError):
            endpoint_file(home).unlink()


def running_endpoint(home: Path | None = None) -> Endpoint | None:
    """The home's running `serve`, or None (no record, or its process is gone)."""
    try:
        endpoint = Endpoint(**json.loads(endpoint_file(home).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return endpoint if process_start(endpoint.pid) is not None else None
