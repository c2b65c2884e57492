"""The Dagster webserver, started as a real process on the code location, serves through its
GraphQL API the whole chain of every shipped model (raw data → serving) with its checks: what a
person sees in the UI's asset graph. Nothing is faked."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from ml_platform.names import STAGES
from ml_platform.settings import instance_config
from ml_platform.specs import load_specs
from ml_platform.tracking.server import free_port

pytestmark = pytest.mark.integration  # starts real servers

QUERY = """{ assetNodes { assetKey { path } dependencyKeys { path } groupName
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("webserver")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "ML_PLATFORM_HOME": str(home)}
    (home / "dagster.yaml").write_text(instance_config("local"))
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-m", "ml_platform.definitions",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=1)
                break
            except OSError:
                assert process.poll() is None, "dagster-webserver exited"
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


def test_asset_graph_has_every_chain_with_its_checks(webserver: str) -> None:
    nodes = {"/".join(n["assetKey"]["path"]): n for n in _graphql(webserver, QUERY)["assetNodes"]}
    for spec in load_specs():
        ds = spec.dataset.name
        chain = [f"{ds}/raw", f"{ds}/validated", *(f"{spec.name}/{s}" for s in STAGES)]
        for upstream, downstream in itertools.pairwise(chain):
            deps = {"/".join(d["path"]) for d in nodes[downstream]["dependencyKeys"]}
            assert upstream in deps, (downstream, deps)
        assert nodes[f"{spec.name}/trained"]["groupName"] == spec.name
        checks = {c["name"]: c["blocking"]
                  for c in nodes[f"{ds}/validated"]["assetChecksOrError"]["checks"]}
        assert checks == {"schema": True, "nulls": True, "ranges": True, "duplicates": True,
                          "completeness": True, "unexpected_columns": False,
                          "freshness_check": False}
        gates = nodes[f"{spec.name}/evaluation"]["assetChecksOrError"]["checks"]
        assert [c["name"] for c in gates] == ["promotion_gates"]
