"""The local endpoint with real processes: `ml-platform demo`, then `ml-platform serve` (its
router and one MLflow scoring server per model) answers raw rows for both models, naming the
version; `demo --retrain` promotes v2 and `rollback` brings v1 back while a loopback client
loops (bounded) and sees only successes, each version in turn; a version whose weights are
corrupt fails to load: `rollback --to` it exits 1 with the reason, the `serving` step fails
with it, and the old version keeps answering. Every command is the CLI as a child process on
one home with its own MLflow server; the specs are the shipped ones with fewer epochs. Nothing
is faked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ml_platform.specs.model_spec import SPEC_DIR
from ml_platform.tracking.server import free_port

pytestmark = pytest.mark.integration  # starts real servers and the CLI

MODELS = ("listing_price", "feed_ranking")


@dataclass
class Home:
    root: Path
    env: dict[str, str]
    url: str = ""
    serve: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ml_platform.cli", *args,
                               "--mlflow-port", self.env["TEST_MLFLOW_PORT"]],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def example(self, model: str) -> bytes:
        """The model's input example (raw rows, MLflow's `dataframe_split`), as v1 logged it."""
        return (self.root / "serving" / "models" / model / "1" /
                "serving_input_example.json").read_bytes()

    def status(self) -> dict[str, object]:
        done = self.cli("serving", "status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _post(url: str, body: bytes) -> tuple[int, str, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers.get("X-Model-Version", ""), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Model-Version", ""), json.loads(exc.read())


@dataclass
class Client:
    """Sends the input example in a loop (loopback, at most `limit` requests) until stopped."""

    url: str
    body: bytes
    limit: int = 20_000
    versions: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set() and len(self.versions) + len(self.failures) < self.limit:
            try:
                status, version, payload = _post(self.url, self.body)
                if status == 200 and len(payload["predictions"]) > 0:
                    self.versions.append(version)
                else:
                    self.failures.append(f"{status} {payload}")
            except Exception as exc:  # any failure a client would see
                self.failures.append(repr(exc))
            time.sleep(0.005)

    def stop(self) -> list[str]:
        """The versions seen, in order, each once per uninterrupted run."""
        time.sleep(1)  # a few requests after the command returned
        self._stop.set()
        self._thread.join(timeout=60)
        return [v for i, v in enumerate(self.versions) if i == 0 or self.versions[i - 1] != v]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    root = tmp_path_factory.mktemp("serving_home")
    specs = root / "specs"
    specs.mkdir()
    for model in MODELS:
        spec = yaml.safe_load((SPEC_DIR / f"{model}.yaml").read_text())
        spec["training"]["epochs"] = 3
        (specs / f"{model}.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    env |= {"ML_PLATFORM_HOME": str(root), "ML_PLATFORM_SPEC_DIR": str(specs),
            "TEST_MLFLOW_PORT": str(free_port())}
    h = Home(root, env)
    demo = h.cli("demo", "--days", "6")
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    port = free_port()
    with (root / "serve.log").open("wb") as log:
        h.serve = subprocess.Popen(
            [sys.executable, "-m", "ml_platform.cli", "serve", "--port", str(port),
             "--mlflow-port", env["TEST_MLFLOW_PORT"]],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    h.url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not all(m["version"] == "1" for m in h.status()["models"]):
            assert h.serve.poll() is None, (root / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (root / "serve.log").read_text()[-3000:]
            time.sleep(1)
        yield h
    finally:
        os.killpg(h.serve.pid, signal.SIGTERM)
        h.serve.wait(timeout=60)


def test_serve_answers_raw_rows_for_both_models(home: Home) -> None:
    status = home.status()
    assert status["endpoint"] == home.url
    for model in MODELS:
        row = next(m for m in status["models"] if m["model"] == model)
        assert (row["version"], row["production"], row["state"]) == ("1", "1", "serving")
        assert row["url"] == f"{home.url}/models/{model}/invocations"
        code, version, payload = _post(row["url"], home.example(model))
        assert (code, version) == (200, "1"), payload
        rows = len(json.loads(home.example(model))["dataframe_split"]["data"])
        assert len(payload["predictions"]) == rows
    code, _, payload = _post(f"{home.url}/models/nope/invocations", home.example(MODELS[0]))
    assert code == 404 and "listing_price" in payload["message"]
    bad = json.dumps({"dataframe_records": [{"room_type": "castle"}]}).encode()
    code, version, payload = _post(f"{home.url}/models/listing_price/invocations", bad)
    assert (code, version) == (400, "1") and payload["error_code"] == "INVALID_PARAMETER_VALUE"


def test_retrain_then_rollback_switch_without_a_failed_request(home: Home) -> None:
    url = f"{home.url}/models/listing_price/invocations"
    client = Client(url, home.example("listing_price"))
    retrain = home.cli("demo", "--retrain", "--model", "listing_price", "--days", "6")
    assert client.stop() == ["1", "2"] and client.failures == [], retrain.stdout[-2000:]
    assert retrain.returncode == 0 and "production is v2" in retrain.stdout

    client = Client(url, home.example("listing_price"))
    back = home.cli("rollback", "listing_price")
    assert client.stop() == ["2", "1"] and client.failures == [], back.stderr
    assert back.returncode == 0 and "v2 -> v1" in back.stdout
    feed = next(m for m in home.status()["models"] if m["model"] == "feed_ranking")
    assert feed["version"] == "1"  # the other model was never touched


def _register_corrupt_version(home: Home) -> str:
    """A copy of v1 whose exported network is truncated, registered as a new version."""
    from mlflow import MlflowClient

    record = json.loads((home.root / "mlflow" / "server.json").read_text())
    client = MlflowClient(record["url"], registry_uri=record["url"])
    corrupt = home.root / "corrupt_model"
    shutil.copytree(home.root / "serving" / "models" / "listing_price" / "1", corrupt)
    network = corrupt / "artifacts" / "network.pt2"
    network.write_bytes(network.read_bytes()[:100])
    run = client.create_run(client.get_experiment_by_name("ml_platform/listing_price").experiment_id)
    client.log_artifacts(run.info.run_id, str(corrupt), "model")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version("listing_price", f"runs:/{run.info.run_id}/model",
                                          run_id=run.info.run_id)
    return str(version.version)


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(home: Home) -> None:
    broken = _register_corrupt_version(home)
    url = f"{home.url}/models/listing_price/invocations"
    client = Client(url, home.example("listing_price"))
    done = home.cli("rollback", "listing_price", "--to", broken)
    assert set(client.stop()) == {"1"} and client.failures == []
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"ml-platform: error: listing_price: production is v{broken}, "
                                  f"but the endpoint {home.url} still serves")
    assert "failed to load" in done.stderr and "Traceback" not in done.stderr
    row = next(m for m in home.status()["models"] if m["model"] == "listing_price")
    assert (row["version"], row["production"]) == ("1", broken)
    assert "failed to load" in row["error"]

    client = Client(url, home.example("listing_price"))
    step = _materialize_serving(home, "listing_price")
    assert set(client.stop()) == {"1"} and client.failures == []
    assert step is not None and "still serves its previous version" in step, step
    assert "failed to load" in step


def _materialize_serving(home: Home, model: str) -> str | None:
    """Materialize `<model>/serving` in this process on the home, as the daemon's run would;
    the step's error message, None if it succeeded."""
    import dagster as dg

    from ml_platform import names
    from ml_platform.pipeline.build import build_definitions
    from ml_platform.pipeline.keys import model_key
    from ml_platform.specs import load_specs
    from ml_platform_tests.services import env

    record = json.loads((home.root / "mlflow" / "server.json").read_text())
    with env(ML_PLATFORM_HOME=str(home.root), DAGSTER_HOME=str(home.root / "dagster"),
             MLFLOW_TRACKING_URI=record["url"], ML_PLATFORM_SPEC_DIR=home.env["ML_PLATFORM_SPEC_DIR"]):
        defs = build_definitions(load_specs(), profile="local")
        with dg.DagsterInstance.get() as instance:
            result = defs.resolve_job_def(names.pipeline_job(model)).execute_in_process(
                instance=instance, asset_selection=[model_key(model, "serving")],
                raise_on_error=False)
    errors = [e.step_failure_data.error.message for e in result.all_events
              if e.is_step_failure and e.step_failure_data.error]
    return errors[0] if errors else None
