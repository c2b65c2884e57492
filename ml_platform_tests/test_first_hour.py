"""A new user's first hour, with real processes: `ml-platform demo`, then `ml-platform dev`
(Dagster webserver, daemon and code server, the home's MLflow server) on the same home. After
two landing-sensor intervals no run was launched, every asset check of the demo's assets
passed, and the GraphQL API reports no stale or unsynced asset (`production` included).

Nothing is faked: the shipped specs with fewer epochs and a 3 s landing-sensor interval (so
two intervals pass in seconds)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ml_platform.specs.model_spec import SPEC_DIR
from ml_platform.tracking.server import free_port
from ml_platform_tests.dagster_ui import graphql, wait_for_webserver

pytestmark = pytest.mark.integration  # starts real servers and commands

SENSOR_INTERVAL_S = 3
EPOCHS = {"listing_price": 5, "feed_ranking": 3}

ASSETS = """{ assetNodes { assetKey { path } staleStatus staleCauses { reason }
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { status } } } } } }"""
RUNS = "{ runsOrError { ... on Runs { results { runId jobName status } } } }"
TICKS = """{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name
  sensorState { ticks(limit: 10) { status } } } } } } }"""


@dataclass(frozen=True)
class DemoHome:
    home: Path
    env: dict[str, str]
    demo: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> DemoHome:
    """A home on which `ml-platform demo` ran (the home's own MLflow server, as a user has it)."""
    home = tmp_path_factory.mktemp("first_hour")
    specs = home / "specs"
    specs.mkdir()
    for path in SPEC_DIR.glob("*.yaml"):
        spec = yaml.safe_load(path.read_text())
        spec["training"]["epochs"] = EPOCHS[spec["name"]]
        spec["dataset"]["sensor_interval_seconds"] = SENSOR_INTERVAL_S
        (specs / path.name).write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME", "ML_PLATFORM_PROFILE")}
    env |= {"ML_PLATFORM_HOME": str(home), "ML_PLATFORM_SPEC_DIR": str(specs)}
    demo = subprocess.run([sys.executable, "-m", "ml_platform.cli", "demo",
                           "--mlflow-port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    return DemoHome(home, env, demo)


@pytest.fixture
def dev(demo_home: DemoHome) -> Iterator[tuple[str, Path]]:
    """`ml-platform dev` on the demo's home; yields the Dagster UI's URL and the log of `dev`."""
    port = free_port()
    log_path = demo_home.home / "dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ml_platform.cli", "dev", "--port", str(port),
             "--mlflow-port", str(free_port())],
            env=demo_home.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_webserver(url, process)
        yield url, log_path
    finally:
        os.kill(process.pid, signal.SIGTERM)  # `dev` stops its process group, as on Ctrl-C
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _sensor_ticks(url: str) -> dict[str, list[str]]:
    (repo,) = graphql(url, TICKS)["repositoriesOrError"]["nodes"]
    return {s["name"]: [t["status"] for t in s["sensorState"]["ticks"]] for s in repo["sensors"]}


def test_dev_after_demo_is_all_green_and_launches_nothing(demo_home: DemoHome,
                                                          dev: tuple[str, Path]) -> None:
    url, log = dev
    runs_before = {r["runId"] for r in graphql(url, RUNS)["runsOrError"]["results"]}
    assert len(runs_before) == 2  # the demo's run of each model

    # the first tick when the daemon starts, then one per interval: three ticks = two intervals
    deadline = time.monotonic() + 240
    while True:
        ticks = {name: [s for s in statuses if s != "STARTED"]  # finished ticks only
                 for name, statuses in _sensor_ticks(url).items() if name.endswith("_landing_sensor")}
        if len(ticks) == 2 and all(len(t) >= 3 for t in ticks.values()):
            break
        assert time.monotonic() < deadline, f"the landing sensors did not tick three times: {ticks}"
        time.sleep(1)

    assert all(status == "SKIPPED" for t in ticks.values() for status in t), ticks
    runs = graphql(url, RUNS)["runsOrError"]["results"]
    assert {r["runId"] for r in runs} == runs_before, runs

    nodes = {"/".join(n["assetKey"]["path"]): n for n in graphql(url, ASSETS)["assetNodes"]}
    assert {"listing_price/production", "feed_ranking/production"} <= set(nodes)
    not_passed = {
        (key, c["name"]): (c["executionForLatestMaterialization"] or {}).get("status")
        for key, node in nodes.items() for c in node["assetChecksOrError"]["checks"]
        if (c["executionForLatestMaterialization"] or {}).get("status") != "SUCCEEDED"
    }
    assert not not_passed, not_passed
    stale = {key: (n["staleStatus"], n["staleCauses"]) for key, n in nodes.items()
             if n["staleStatus"] != "FRESH" or n["staleCauses"]}
    assert not stale, stale

    # each model's chain has a link that opens it expanded (the global lineage starts collapsed)
    printed = log.read_text()
    for model in ("listing_price", "feed_ranking"):
        assert f"Lineage:    {url}/assets/{model}/production?view=lineage" in printed, printed[:2000]

    # the processes `dev` started (webserver, daemon, code servers) say nothing of Dagster's betas
    warned = [line for line in printed.splitlines()
              if any(w in line for w in ("BetaWarning", "PreviewWarning", "SupersessionWarning"))]
    assert not warned, warned


STEP_LINE = re.compile(r"^  (\S.*?) +(ok|passed|no change|skipped|not run|FAILED|\d+ FAILED) +"
                       r"(\d+\.\ds|-)(  .*)?$")


def test_demo_prints_one_line_per_step_and_no_library_log(demo_home: DemoHome) -> None:
    out, err = demo_home.demo.stdout, demo_home.demo.stderr
    steps = [m.group(1, 2) for m in map(STEP_LINE.match, out.splitlines()) if m]
    for model in EPOCHS:
        assert (f"{model}/trained", "passed") in steps, out  # its gpu_utilization check
        assert (f"{model}/evaluation", "passed") in steps, out
    for noise in ("dagster - ", "Waiting up to", "Warning", "Traceback", "INFO mlflow"):
        assert noise not in out + err, noise
    assert out.rstrip().splitlines()[-1].startswith("demo finished in ")


def _job_execute(demo_home: DemoHome, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`dagster job execute -j listing_price_pipeline -m ml_platform.definitions` on the home."""
    return subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-j", "listing_price_pipeline",
         "-m", "ml_platform.definitions", *args],
        env={**demo_home.env, "DAGSTER_HOME": str(demo_home.home / "dagster"), **env},
        capture_output=True, text=True, timeout=600)


def _steps_started(demo_home: DemoHome, output: str) -> int:
    import dagster as dg

    run_id = output.split("Error: Run ")[-1].split()[0] if "Error: Run " in output else None
    assert run_id, output[-2000:]
    with dg.DagsterInstance.from_config(str(demo_home.home / "dagster")) as inst:
        records = inst.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START)
        return len(records.records)


def test_dagster_job_execute_refuses_without_days_then_runs_with_them(demo_home: DemoHome) -> None:
    from ml_platform.tracking.home_server import home_server
    from ml_platform_tests.services import env

    refused = _job_execute(demo_home)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1
    assert ("RunRefused: listing_price_pipeline: bookings/raw, bookings/validated, "
            "listing_price/features, listing_price/predictions are partitioned by day and this "
            "run names no day: run `ml-platform ingest`") in output
    assert _steps_started(demo_home, output) == 0

    # the fix the message names: the days as tags (here the demo's), and an MLflow server
    tags = output.split("--tags '")[1].split("'")[0]
    no_server = _job_execute(demo_home, "--tags", tags)
    output = no_server.stdout + no_server.stderr
    assert no_server.returncode == 1 and "no MLflow tracking server: set MLFLOW_TRACKING_URI" in output
    assert _steps_started(demo_home, output) == 0
    with env(MLFLOW_TRACKING_URI=None), home_server(demo_home.home, port=free_port()) as server:
        done = _job_execute(demo_home, "--tags", tags, MLFLOW_TRACKING_URI=server.url)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "RUN_SUCCESS" in done.stdout + done.stderr
