"""The platform end to end on the local cluster, installed by its chart: `helm install` of
helm/ml-platform (bundled PostgreSQL, the chart's MLflow, the Dagster webserver, daemon and
code location, all from the project's image), S3 on moto's server at the node's address. Days
are landed from the host with `ml-platform simulate` (the `k8s` profile); the daemon's landing
sensor requests the retrain run, `K8sRunLauncher` starts its run pod, the run pod launches the
training pod through `PipesK8sClient`, and production moves.

Asserted: the run succeeded through a run-worker pod; the training pod was placed by the
scheduler with `nvidia.com/gpu: 1` from the spec and the pod `ml-platform k8s render` prints
for that spec; Pipes brought the pod's log lines and its materialization (metrics) into the
run's event log; the chart's MLflow has the run (one `valid_mae` point per epoch) and the
registered model, and its `production` alias names the version `ml-platform lineage` reports.
The log (`make test-cluster` runs pytest with -s) shows the training pod's scheduling, its
resources and the MLflow run.

Real: the cluster, the images, the chart, Dagster's daemon and run launcher, MLflow, PostgreSQL.
Faked: the GPU (advertised by the node, not present: torch trains on the CPU); S3 (moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import kubernetes
import pytest
import yaml

from ml_platform import names
from ml_platform_tests.cluster.local import GPU, wait_for
from ml_platform_tests.cluster.pods import PodWatch, describe_scheduling, not_kept
from ml_platform_tests.cluster.release import FULLNAME, Release, installed, small_spec
from ml_platform_tests.services import env

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
SPEC = small_spec()
DAYS, START = 3, "2026-05-01"


@pytest.fixture(scope="module")
def release(api: kubernetes.client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Release]:
    with installed(api, tmp_path_factory.mktemp("release"), [SPEC]) as rel:
        yield rel


def cli(release: Release, *args: str) -> str:
    """`ml-platform ARGS` on the host, in the `k8s` profile against the release's stores."""
    done = subprocess.run([sys.executable, "-m", "ml_platform.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **release.env}, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def finished_run(instance: dg.DagsterInstance, job: str, timeout: float) -> dg.DagsterRun:
    """The first run of `job` once it has finished (success or not)."""
    def done() -> dg.DagsterRun | None:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=job))
        return next((r for r in runs if r.is_finished), None)
    return wait_for(done, timeout, f"a finished run of {job}", interval=2)


def test_landed_days_reach_production_through_the_daemon_and_a_gpu_pod(
        api: kubernetes.client.CoreV1Api, release: Release) -> None:
    ns = release.namespace
    started = time.monotonic()
    with PodWatch(api, ns) as pods:
        print(cli(release, "simulate", "--dataset", "bookings", "--days", str(DAYS),
                  "--start", START))
        with env(**release.env):
            instance = dg.DagsterInstance.from_config(release.env["DAGSTER_HOME"])
            run = finished_run(instance, names.retrain_job("bookings"), 900)
            logs = instance.all_logs(run.run_id)
    print(f"landing to a finished run on the cluster: {time.monotonic() - started:.0f}s")
    failures = [e.message for e in logs if e.dagster_event and e.dagster_event.is_failure]
    assert run.status == dg.DagsterRunStatus.SUCCESS, "\n".join(failures) or pods.dump(api)

    # The run executed in a run-worker pod (K8sRunLauncher), which launched the training pod.
    run_pods = pods.with_label("dagster/run-id", run.run_id)
    assert run_pods, f"no run pod for run {run.run_id}: {sorted(pods.seen)}"
    (training,) = pods.with_label("app.kubernetes.io/component", "training")
    print(describe_scheduling(api, ns, training, pods.running_at.get(training.metadata.name)))
    (container,) = training.spec.containers
    assert container.resources.limits[GPU] == "1"
    assert container.resources.requests["cpu"] == "500m" and training.spec.node_name
    # What the step submitted is what `ml-platform k8s render` prints for the spec with the
    # release's settings (bar the per-run name, the Pipes variables and the MLflow run id).
    differences = list(not_kept(_rendered(api, release), _stored(api, training)))
    assert not differences, json.dumps(differences, indent=1, default=str)

    # Pipes: the pod's log lines and its materialization came back into the run's event log.
    messages = [e.user_message for e in logs if e.step_key and "trained" in e.step_key]
    assert any("training on cpu" in m for m in messages), messages[-20:]
    trained = instance.get_latest_materialization_event(
        dg.AssetKey(names.model_asset_path(SPEC.name, "trained")))
    assert trained is not None and trained.run_id == run.run_id
    meta = {k: getattr(v, "value", v)
            for k, v in trained.asset_materialization.metadata.items()}
    assert meta["epochs"] == SPEC.training.epochs

    # MLflow in the cluster: the run with one point per epoch, the model, production.
    from mlflow import MlflowClient

    chain = json.loads(cli(release, "lineage", SPEC.name, "--json"))
    mlflow_run_id = chain["mlflow_run"]["run_id"]
    print(f"MLflow run {mlflow_run_id} ({release.mlflow_url}): "
          f"test_mae {chain['mlflow_run']['metrics'].get('test_mae')}, "
          f"production v{chain['version']}")
    client = MlflowClient(release.mlflow_url)
    history = client.get_metric_history(mlflow_run_id, "valid_mae")
    assert sorted(m.step for m in history) == list(range(1, SPEC.training.epochs + 1))
    production = client.get_model_version_by_alias(SPEC.name, names.PRODUCTION_ALIAS)
    assert production.run_id == mlflow_run_id and production.version == chain["version"]
    assert training.metadata.annotations["ml-platform/mlflow-run-id"] == mlflow_run_id


def _rendered(api: kubernetes.client.CoreV1Api, release: Release) -> dict[str, Any]:
    """`ml-platform k8s render` with the release's training settings (its env ConfigMap), less
    what only the run knows: the pod's name, the MLflow run id, the variables' values."""
    config = api.read_namespaced_config_map(f"{FULLNAME}-env", release.namespace).data
    done = subprocess.run(
        [sys.executable, "-m", "ml_platform.cli", "k8s", "render", SPEC.name],
        capture_output=True, text=True, check=True,
        env={**os.environ, **release.env,
             "ML_PLATFORM_TRAINING_POD": config["ML_PLATFORM_TRAINING_POD"]})
    (pod,) = [d for d in yaml.safe_load_all(done.stdout) if d]
    del pod["apiVersion"], pod["kind"], pod["metadata"]["name"], pod["metadata"]["annotations"]
    for container in pod["spec"]["containers"]:
        container["env"] = sorted(e["name"] for e in container["env"])
    return pod


def _stored(api: kubernetes.client.CoreV1Api, pod: Any) -> dict[str, Any]:
    stored = api.api_client.sanitize_for_serialization(pod)
    for container in stored["spec"]["containers"]:
        container["env"] = sorted(e["name"] for e in container["env"])
    return stored
