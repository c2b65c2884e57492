"""Code sync on the local cluster: commands run on the host as from a laptop (the `k8s` profile,
a kubeconfig, training in pods placed with the release's settings) ship the code they run to
the training pod, without building or importing an image.

Asserted: `ml-platform ingest` of landed days trains in a pod whose MLflow run records the code
package's hash; after a change to a training-code file (the entrypoint logs one more param),
`dagster asset materialize` of `trained` and `evaluation` from the changed checkout trains on
the same image, and its MLflow run shows the param and the new hash; with a runtime lock the
image was not built from, the training pod refuses at once (one pod, no retry) and the step's
error names both locks' hashes.

Real: the cluster, the project's image, the chart (MLflow, PostgreSQL), Dagster Pipes, the CLI.
Faked: the GPU (advertised, not present), S3 (moto on the node's address). The release's daemon
is scaled to zero, so its sensors leave the host's landed days to the host's command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import pytest
from mlflow import MlflowClient

from ml_platform import names
from ml_platform.compute import code_package
from ml_platform.compute.code_sync import REFUSED
from ml_platform_tests.cluster.pods import PodWatch
from ml_platform_tests.cluster.release import (
    Release,
    installed,
    laptop_env,
    small_spec,
    stop_daemon,
)
from ml_platform_tests.services import env

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
SPEC = small_spec()
# The inner loop's command: Dagster's CLI materializes the two assets, training in a pod.
MATERIALIZE = ("dagster", "asset", "materialize", "-m", "ml_platform.definitions", "--select",
               ",".join("/".join(names.model_asset_path(SPEC.name, stage))
                        for stage in ("trained", "evaluation")))
PARAM_LINE = '"task": params.task, "loss": params.loss,'


@pytest.fixture(scope="module")
def release(api: kubernetes.client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Release]:
    with installed(api, tmp_path_factory.mktemp("release"), [SPEC], prefix="mlp-sync") as rel:
        stop_daemon(rel)
        yield rel


@pytest.fixture(scope="module")
def ingested(api: kubernetes.client.CoreV1Api, release: Release) -> dict[str, Any]:
    """Days landed and `ml-platform ingest` run from the host: the first training, in a pod
    from this checkout's code package. Its MLflow run and the image its pod ran."""
    laptop = laptop_env(api, release)
    _run(laptop, "ml_platform.cli", "simulate", "--dataset", SPEC.dataset.name, "--days", "3")
    with PodWatch(api, release.namespace) as pods:
        print(_run(laptop, "ml_platform.cli", "ingest", "--dataset", SPEC.dataset.name).stdout)
    (pod,) = pods.with_label("app.kubernetes.io/component", "training")
    return {"run": _newest_run(release), "image_id": pod.status.container_statuses[0].image_id}


def _run(environ: dict[str, str], *args: str, cwd: Path | None = None,
         ok: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m ARGS` from `cwd` (its `ml_platform` ahead of the installed one, as `python -m`
    puts the working directory first)."""
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True,
                          text=True, env=environ, cwd=cwd, timeout=900)
    if ok:
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _checkout(tmp: Path) -> Path:
    """A copy of this checkout's package, to be edited as a user edits theirs."""
    src = tmp / f"checkout-{uuid.uuid4().hex[:6]}"
    shutil.copytree(code_package.PACKAGE_DIR, src / "ml_platform",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def _newest_run(release: Release) -> Any:
    client = MlflowClient(release.mlflow_url)
    experiment = client.get_experiment_by_name(names.experiment(SPEC.name))
    (run,) = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                                max_results=1)
    return run


def _spec_dir(release: Release) -> Path:
    return Path(release.env["ML_PLATFORM_SPEC_DIR"])


def test_a_code_change_trains_on_the_cluster_without_an_image_build(
        api: kubernetes.client.CoreV1Api, release: Release, ingested: dict[str, Any],
        tmp_path: Path) -> None:
    laptop, first = laptop_env(api, release), ingested["run"]
    shipped = code_package.build(spec_dir=_spec_dir(release)).code_hash
    assert first.data.tags[names.Tag.CODE_PACKAGE] == shipped
    assert first.data.tags[names.Tag.CODE_SOURCE] == "code package"

    # The user's edit: the training logs one more param. No image is built or imported.
    checkout = _checkout(tmp_path)
    entrypoint = checkout / "ml_platform" / "compute" / "entrypoint.py"
    token = uuid.uuid4().hex[:8]
    source = entrypoint.read_text()
    assert source.count(PARAM_LINE) == 1
    entrypoint.write_text(source.replace(PARAM_LINE, f'"code_sync_probe": "{token}", {PARAM_LINE}'))
    with PodWatch(api, release.namespace) as pods:
        done = _run(laptop, *MATERIALIZE, cwd=checkout)
    print(done.stdout)
    run = _newest_run(release)
    changed = code_package.build(checkout / "ml_platform", spec_dir=_spec_dir(release)).code_hash
    assert run.info.run_id != first.info.run_id and run.data.params["code_sync_probe"] == token
    assert run.data.tags[names.Tag.CODE_PACKAGE] == changed != shipped
    print(f"code package {shipped[:12]} -> {changed[:12]}: fetched and verified in the pod in "
          f"{run.data.metrics[names.CODE_SYNC_SECONDS]:.2f}s")
    (pod,) = pods.with_label("app.kubernetes.io/component", "training")
    assert pod.status.container_statuses[0].image_id == ingested["image_id"]  # the same image


def test_a_pod_refuses_code_made_for_another_runtime_lock(
        api: kubernetes.client.CoreV1Api, release: Release, ingested: dict[str, Any],
        tmp_path: Path) -> None:
    laptop = laptop_env(api, release)
    checkout = _checkout(tmp_path)
    lock = checkout / "ml_platform" / "runtime.lock"
    lock.write_text(lock.read_text() + "# a dependency changed since the image was built\n")
    expected = code_package.lock_hash(checkout / "ml_platform")
    with PodWatch(api, release.namespace, interval=0.1) as pods:  # the pod lives a second
        done = _run(laptop, *MATERIALIZE, cwd=checkout, ok=False)
    assert done.returncode != 0, done.stdout + done.stderr
    training = pods.with_label("app.kubernetes.io/component", "training")
    assert len(training) == 1  # refused once, not retried

    with env(**release.env):
        instance = dg.DagsterInstance.from_config(release.env["DAGSTER_HOME"])
        (run,) = instance.get_runs(limit=1)
        failures = [e.dagster_event.step_failure_data.error.message for e in
                    instance.all_logs(run.run_id)
                    if e.dagster_event and e.dagster_event.is_step_failure]
    (failure,) = failures
    print(f"the step's error: {failure.strip()}")
    assert REFUSED in failure and code_package.lock_hash() in failure and expected in failure
    terminated = pods.terminated[training[0].metadata.name]
    assert terminated.exit_code == 3 and terminated.message.startswith(REFUSED)
    production = json.loads(_run(laptop, "ml_platform.cli", "lineage", SPEC.name, "--json").stdout)
    assert production["version"] == "1"  # nothing registered from the refused run
