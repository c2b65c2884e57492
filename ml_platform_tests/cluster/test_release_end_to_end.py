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
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import pytest
import yaml

from ml_platform import names
from ml_platform.serving.cluster import VERSION_ANNOTATION
from ml_platform.settings import SERVING_ENV
from ml_platform_tests.cluster.local import GPU, kubeconfig_path, pod_log, wait_for
from ml_platform_tests.cluster.pods import PodWatch, describe_scheduling, not_kept
from ml_platform_tests.cluster.release import (
    FULLNAME,
    Release,
    installed,
    slow_spec,
    small_spec,
)
from ml_platform_tests.services import env

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
SPEC, SLOW, PREEMPTED = small_spec(), slow_spec(), slow_spec("preempted", epochs=60)
DAYS, START = 3, "2026-05-01"


@pytest.fixture(scope="module")
def release(api: kubernetes.client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Release]:
    with installed(api, tmp_path_factory.mktemp("release"), [SPEC, SLOW, PREEMPTED]) as rel:
        yield rel


def cli(release: Release, *args: str, extra_env: dict[str, str] | None = None) -> str:
    """`ml-platform ARGS` on the host, in the `k8s` profile against the release's stores."""
    done = subprocess.run([sys.executable, "-m", "ml_platform.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **release.env, **(extra_env or {})},
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def finished_run(instance: dg.DagsterInstance, job: str, timeout: float) -> dg.DagsterRun:
    """The first run of `job` once it has finished (success or not)."""
    def done() -> dg.DagsterRun | None:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=job))
        return next((r for r in runs if r.is_finished), None)
    return wait_for(done, timeout, f"a finished run of {job}", interval=2)


def _failure(event: dg.DagsterEvent) -> str:
    """A failure event's message, with the step's error (its message and where it was raised)."""
    error = getattr(event.event_specific_data, "error", None)
    message = event.message or ""
    return message if error is None else f"{message}\n{error.to_string()[-3000:]}"


def _runs(instance: dg.DagsterInstance) -> list[str]:
    """Every run of the instance, oldest first: its job, status and what launched it."""
    keep = ("dagster/sensor_name", "dagster/schedule_name", "dagster/asset_partition_range_start",
            "dagster/asset_partition_range_end", "dagster/parent_run_id", "ml_platform/trigger")
    return [f"run {r.run_id[:8]} {r.job_name} {r.status.value} "
            f"{ {k: v for k, v in r.tags.items() if k in keep} }"
            for r in reversed(instance.get_runs())]


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
    failures = [_failure(e.dagster_event) for e in logs
                if e.dagster_event and e.dagster_event.is_failure]
    assert run.status == dg.DagsterRunStatus.SUCCESS, \
        "\n".join([*failures, *_runs(instance)]) or pods.dump(api)

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
    mlflow_run_id = chain["mlflow_run"]["id"]
    print(f"MLflow run {mlflow_run_id} ({release.mlflow_url}): "
          f"test_mae {chain['mlflow_run']['metrics'].get('test_mae')}, "
          f"production v{chain['version']}")
    client = MlflowClient(release.mlflow_url)
    history = client.get_metric_history(mlflow_run_id, "valid_mae")
    assert sorted(m.step for m in history) == list(range(1, SPEC.training.epochs + 1))
    production = client.get_model_version_by_alias(SPEC.name, names.PRODUCTION_ALIAS)
    assert production.run_id == mlflow_run_id and production.version == chain["version"]
    assert training.metadata.annotations["ml-platform/mlflow-run-id"] == mlflow_run_id


def test_run_pod_deleted_mid_training_takes_the_training_pod_with_it(
        api: kubernetes.client.CoreV1Api, release: Release) -> None:
    """No orphans: the run pod deleted while its training pod trains (an eviction, a lost
    node, `kubectl delete`): the cluster's garbage collector deletes the training pod (owned by
    the run pod), and no pod of the run holds a GPU afterwards."""
    ns = release.namespace
    cli(release, "simulate", "--dataset", SLOW.dataset.name, "--days", str(DAYS), "--start", START)
    training = wait_for(lambda: _training_pod(api, ns, SLOW.name, running=True), 600,
                        f"a Running training pod of {SLOW.name}", interval=2)
    name = training.metadata.name
    (owner,) = training.metadata.owner_references
    run_pod = api.read_namespaced_pod(owner.name, ns)
    assert owner.kind == "Pod" and owner.uid == run_pod.metadata.uid
    assert run_pod.metadata.labels["dagster/run-id"]
    assert training.spec.active_deadline_seconds == 86400
    wait_for(lambda: "epoch 1/" in pod_log(api, ns, name), 300, f"{name}'s first epoch", interval=2)
    print(f"deleting run pod {owner.name} while {name} trains")
    api.delete_namespaced_pod(owner.name, ns)
    started = time.monotonic()
    wait_for(lambda: not _exists(api, ns, name), 120, f"{name} to go with its run pod")
    print(f"training pod {name} gone {time.monotonic() - started:.0f}s after its run pod")
    held = [p.metadata.name for p in api.list_namespaced_pod(ns).items
            if p.metadata.labels.get("dagster/run-id") == run_pod.metadata.labels["dagster/run-id"]
            and any((c.resources.limits or {}).get(GPU) for c in p.spec.containers)]
    assert not held, held


def test_training_pod_deleted_mid_training_resumes_in_the_same_mlflow_run(
        api: kubernetes.client.CoreV1Api, release: Release) -> None:
    """Preemption: the training pod deleted mid-training with a grace period (as a node drain
    or a spot reclaim does): the training process gets SIGTERM, keeps its newest checkpoint
    (mirrored to S3) and says why it stopped; the step is retried in a new pod, which resumes
    from that checkpoint in the same MLflow run: every epoch's metric once, none lost."""
    ns, epochs = release.namespace, PREEMPTED.training.epochs
    with PodWatch(api, ns) as pods:
        cli(release, "simulate", "--dataset", PREEMPTED.dataset.name, "--days", str(DAYS),
            "--start", START)
        first = wait_for(lambda: _training_pod(api, ns, PREEMPTED.name, running=True), 600,
                         f"a Running training pod of {PREEMPTED.name}", interval=2)
        name = first.metadata.name
        wait_for(lambda: "epoch 3/" in pod_log(api, ns, name), 300, f"{name}'s third epoch",
                 interval=1)
        api.delete_namespaced_pod(name, ns, grace_period_seconds=30)
        print(f"deleted training pod {name} (grace 30s) once its log showed epoch 3 of {epochs}")
        with env(**release.env):
            instance = dg.DagsterInstance.from_config(release.env["DAGSTER_HOME"])
            run = finished_run(instance, names.retrain_job(PREEMPTED.dataset.name), 900)
            logs = instance.all_logs(run.run_id)
            trained = instance.get_latest_materialization_event(
                dg.AssetKey(names.model_asset_path(PREEMPTED.name, "trained")))
    assert run.status == dg.DagsterRunStatus.SUCCESS, pods.dump(api)
    attempts = sorted(p.metadata.name for p in
                      pods.with_label("ml-platform/model", PREEMPTED.name))
    assert len(attempts) == 2 and name in attempts, attempts
    # The process stopped on SIGTERM and Pipes brought its reason back before the pod went.
    errors = [e.dagster_event.engine_event_data.error for e in logs
              if e.dagster_event and e.dagster_event.is_engine_event
              and e.dagster_event.engine_event_data.error]
    assert any("stopped by SIGTERM" in err.message for err in errors), [e.message for e in errors]
    assert any(e.dagster_event and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
               for e in logs)
    assert trained is not None and trained.run_id == run.run_id
    meta = {k: getattr(v, "value", v) for k, v in trained.asset_materialization.metadata.items()}
    assert meta["resumed_from_epoch"] >= 3, meta
    print(f"retry resumed from epoch {meta['resumed_from_epoch']} in MLflow run "
          f"{meta['mlflow_run_id']}")

    from mlflow import MlflowClient

    client = MlflowClient(release.mlflow_url)
    for metric in ("train_loss", "valid_mae"):
        steps = sorted(m.step for m in client.get_metric_history(meta["mlflow_run_id"], metric))
        assert steps == list(range(1, epochs + 1)), (metric, steps)


def test_helm_upgrade_migrates_an_old_mlflow_schema_and_keeps_the_runs(
        api: kubernetes.client.CoreV1Api, release: Release) -> None:
    """Upgrade: the chart's MLflow database taken back one schema migration (MLflow's own
    alembic downgrade, as an older MLflow left it); `helm upgrade` runs the migration hook
    (`mlflow db upgrade`, `dagster instance migrate`) before anything restarts: the schema is
    current again while the old MLflow pod still runs; a new MLflow pod starts on it and keeps
    the runs. A second upgrade (nothing to migrate) passes too: the hook is idempotent."""
    import mlflow.store.db.utils as db
    import sqlalchemy as sa
    from alembic import command
    from mlflow import MlflowClient

    engine = db.create_sqlalchemy_engine_with_retry(release.mlflow_database)

    def revision() -> str:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()

    head = revision()
    client = MlflowClient(release.mlflow_url)
    kept = client.create_run(client.create_experiment(f"upgrade-{time.time_ns()}")).info.run_id
    client.log_metric(kept, "kept", 1.0, step=1)
    runs_before = {r.info.run_id for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()])}
    command.downgrade(db._get_alembic_config(release.mlflow_database), "-1")
    old = revision()
    assert old != head
    (mlflow_pod,) = api.list_namespaced_pod(
        release.namespace, label_selector="app.kubernetes.io/component=mlflow").items

    started = time.monotonic()
    print(release.upgrade(api))
    print(f"helm upgrade (hook: {old} -> {revision()}): {time.monotonic() - started:.0f}s")
    assert revision() == head
    (same,) = api.list_namespaced_pod(
        release.namespace, label_selector="app.kubernetes.io/component=mlflow").items
    assert same.metadata.uid == mlflow_pod.metadata.uid  # the hook migrated, not a new MLflow

    api.delete_namespaced_pod(mlflow_pod.metadata.name, release.namespace)
    wait_for(lambda: _ready(api, release.namespace, "mlflow", mlflow_pod.metadata.uid), 300,
             "a new MLflow pod to be ready on the migrated schema", interval=2)
    wait_for(lambda: _answers(release.mlflow_url), 120, "MLflow through its Service")
    runs_after = {r.info.run_id for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()])}
    assert runs_before <= runs_after
    assert [m.value for m in client.get_metric_history(kept, "kept")] == [1.0]
    release.upgrade(api)  # nothing to migrate: the hook passes again
    assert revision() == head



class _Client(threading.Thread):
    """Posts the model's input example to the endpoint's Service in a loop (loopback to the
    node's kube-proxy, one request at a time) and keeps (status, first prediction) of each."""

    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.answers: list[tuple[int, object]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            request = urllib.request.Request(self.url, data=self.body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    self.answers.append((answer.status, json.loads(answer.read())["predictions"][0]))
            except urllib.error.HTTPError as exc:
                self.answers.append((exc.code, exc.read()[:200]))
            except OSError as exc:
                self.answers.append((0, repr(exc)))
            time.sleep(0.05)


def _template(apps: kubernetes.client.AppsV1Api, ns: str, name: str) -> tuple[str, str]:
    """The serving Deployment's version annotation and MODEL_URI, once its rollout is done."""
    d = apps.read_namespaced_deployment(name, ns)
    (container,) = d.spec.template.spec.containers
    uri = next(e.value for e in container.env if e.name == "MODEL_URI")
    return d.spec.template.metadata.annotations.get(VERSION_ANNOTATION, ""), uri


def test_the_serving_deployment_follows_promotion_and_rollback_without_a_failed_request(
        api: kubernetes.client.CoreV1Api, release: Release, tmp_path: Path) -> None:
    """The chart's endpoint of a model (`serving.models.<model>.enabled`): a Deployment + Service
    running MLflow's scoring server of the production version. Enabled by `helm upgrade` once
    production exists, it answers raw rows; `ml-platform promote` of another version rolls it
    (the pod-template annotation and MODEL_URI) and `rollback` rolls it back, while a client
    loops on the Service: every answer a success. The serving pod asks for no GPU."""
    from mlflow import MlflowClient

    from ml_platform.serving.backend import serving_input
    from ml_platform.tracking.scoring import download_model

    ns, model = release.namespace, SPEC.name
    values = yaml.safe_load(release.values_file.read_text())
    values["serving"] = {"models": {model: {"enabled": True}}, "resources": {
        "requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}}
    release.values_file.write_text(yaml.safe_dump(values))
    started = time.monotonic()
    release.upgrade(api)  # --wait: the endpoint's pod loaded production (v1) and answers /ping
    print(f"helm upgrade enabling {model}'s endpoint: {time.monotonic() - started:.0f}s")

    config = api.read_namespaced_config_map(f"{FULLNAME}-env", ns).data
    serving = json.loads(config[SERVING_ENV])
    name = serving["models"][model]
    apps = kubernetes.client.AppsV1Api(api.api_client)
    (pod,) = api.list_namespaced_pod(ns, label_selector=f"ml-platform/model={model},"
                                     "app.kubernetes.io/component=serving").items
    (container,) = pod.spec.containers
    assert GPU not in (container.resources.limits or {}) and GPU not in (
        container.resources.requests or {})

    client = MlflowClient(release.mlflow_url)
    v1 = client.get_model_version_by_alias(model, names.PRODUCTION_ALIAS)
    # a second version of the same files: a promotion to roll to (no training needed)
    logged_model = v1.model_id or v1.source.removeprefix("models:/")  # `models:/m-...`
    v2 = client.create_model_version(model, v1.source, run_id=v1.run_id,
                                     model_id=logged_model).version
    with env(**release.env):
        body = serving_input(download_model(f"models:/{model}/{v1.version}",
                                            release.mlflow_url, tmp_path)).encode()
    ip = api.read_namespaced_service(name, ns).spec.cluster_ip
    loop = _Client(f"http://{ip}:8080/invocations", body)
    cli_env = {SERVING_ENV: config[SERVING_ENV], "KUBECONFIG": str(kubeconfig_path())}
    loop.start()
    try:
        wait_for(lambda: loop.answers, 60, "a first answer from the endpoint")
        assert loop.answers[0][0] == 200, loop.answers[0]
        for version, argv in ((v2, ("promote", model, "--version", v2, "--force",
                                    "--reason", "rollout drill")),
                              (v1.version, ("rollback", model, "--reason", "rollout drill"))):
            started = time.monotonic()
            print(cli(release, *argv, extra_env=cli_env).strip())
            print(f"{argv[0]}: rolled to v{version} in {time.monotonic() - started:.0f}s, "
                  f"{len(loop.answers)} answers so far")
            assert _template(apps, ns, name) == (version, f"models:/{model}/{version}")
    finally:
        loop.stop.set()
        loop.join(timeout=60)
    failed = [a for a in loop.answers if a[0] != 200]
    assert not failed, failed[:5]
    assert len(loop.answers) > 10


def _ready(api: kubernetes.client.CoreV1Api, ns: str, component: str, not_uid: str) -> bool:
    pods = api.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/component={component}")
    return any(p.metadata.uid != not_uid and p.status.container_statuses
               and all(c.ready for c in p.status.container_statuses) for p in pods.items)


def _answers(url: str) -> bool:
    from ml_platform.tracking.server import is_healthy

    return is_healthy(url)


def _training_pod(api: kubernetes.client.CoreV1Api, ns: str, model: str,
                  running: bool) -> Any:
    pods = api.list_namespaced_pod(ns, label_selector=f"ml-platform/model={model}").items
    return next((p for p in pods if not running or p.status.phase == "Running"), None)


def _exists(api: kubernetes.client.CoreV1Api, ns: str, name: str) -> bool:
    try:
        api.read_namespaced_pod(name, ns)
        return True
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


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
