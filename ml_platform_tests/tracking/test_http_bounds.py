"""`ml_platform.tracking.http_bounds`: the MLflow client settings that bound a dead tracking
server, and the one line that names it. The real MLflow client is pointed at real loopback
sockets standing in for broken servers: a closed port (refused), a server that answers 503
or 404, one that accepts and never answers. Counting the attempts each receives shows MLflow
honours the variables by these names. The broken servers are small threads of this process;
nothing in MLflow is patched."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from mlflow import MlflowClient

from ml_platform.faults import is_transient
from ml_platform.tracking.http_bounds import (
    DEFAULT_BOUNDS,
    HttpBounds,
    apply_http_bounds,
    tracking_failure,
)
from ml_platform.tracking.server import free_port
from ml_platform_tests.services import env

QUICK = HttpBounds(max_retries=1, backoff_factor=0, backoff_jitter=0.0, timeout=1)


def _failure(url: str, bounds: HttpBounds = QUICK) -> BaseException:
    with env(**bounds.environ()), pytest.raises(Exception) as info:
        MlflowClient(tracking_uri=url).get_run("abc")
    return info.value


class _Counting(http.server.BaseHTTPRequestHandler):
    status = 503
    body = b"down"
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[tuple[type[_Counting], str]]:
    handler = type("Handler", (_Counting,), {"hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_default_bounds_keep_a_dead_server_under_two_minutes() -> None:
    """Arithmetic over urllib3's backoff formula, not a timing: a refused request gives up
    after ~32 s (a restart rides that out), a hung one within 2 minutes."""
    assert DEFAULT_BOUNDS.refused_seconds() == pytest.approx(0 + 2.5 + 4.5 + 8.5 + 16.5)
    assert DEFAULT_BOUNDS.worst_case_seconds() == pytest.approx(6 * 12 + 32)
    assert DEFAULT_BOUNDS.worst_case_seconds() < 120
    mlflow_defaults = HttpBounds(max_retries=7, backoff_factor=2, backoff_jitter=1.0, timeout=120)
    assert mlflow_defaults.worst_case_seconds() > 15 * 60  # the hang of issue 10


def test_apply_keeps_an_operators_values() -> None:
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    applied = apply_http_bounds(environ=environ)
    assert applied["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"
    assert applied["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert environ["MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER"] == "false"


def test_refused_connection_is_transient_and_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    exc = _failure(url)
    assert is_transient(exc)
    line = tracking_failure(exc, url, QUICK)
    assert line.startswith(f"MLflow tracking server {url} is not available (connection refused;")
    assert "\n" not in line


def test_credentials_never_reach_the_line() -> None:
    port = free_port()
    url = f"http://robot:s3cret@127.0.0.1:{port}"
    line = tracking_failure(_failure(url), url, QUICK)
    assert "s3cret" not in line and "robot" not in line
    assert f"http://127.0.0.1:{port}" in line


def test_5xx_is_retried_max_retries_times_then_transient(
        answering: tuple[type[_Counting], str]) -> None:
    handler, url = answering
    exc = _failure(url, HttpBounds(max_retries=2, backoff_factor=0, backoff_jitter=0.0, timeout=5))
    assert len(handler.hits) == 3  # MLFLOW_HTTP_REQUEST_MAX_RETRIES=2: three attempts
    assert is_transient(exc)
    assert "(answered HTTP 503;" in tracking_failure(exc, url, QUICK)


def test_4xx_fails_at_once_with_the_servers_message(
        answering: tuple[type[_Counting], str]) -> None:
    handler, url = answering
    handler.status = 404
    handler.body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST",
                               "message": "Run 'abc' not found"}).encode()
    exc = _failure(url)
    assert len(handler.hits) == 1
    assert not is_transient(exc)
    line = tracking_failure(exc, url, QUICK)
    assert line.startswith(f"MLflow tracking server {url} refused the request: ")
    assert "Run 'abc' not found" in line and "\n" not in line


def test_hung_server_times_out_after_bounded_attempts() -> None:
    """A socket that accepts and never answers: each attempt ends at the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        exc = _failure(url)
        assert len(accepted) == 2  # one retry
        assert is_transient(exc)
        assert "(timed out;" in tracking_failure(exc, url, QUICK)
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
