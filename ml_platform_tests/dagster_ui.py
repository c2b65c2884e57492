"""The Dagster webserver as the tests reach it: wait for it to answer, ask its GraphQL API."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from typing import Any


def wait_for_webserver(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    """Until `url` answers; fails at once when `process` (what serves it) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=1)
            return
        except OSError:
            assert process.poll() is None, f"the process serving {url} exited ({process.returncode})"
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f}s")


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `data` of a GraphQL answer; fails on an `errors` answer."""
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]
