"""The platform's training step on the real local cluster: `K8sPodTrainer.train` (the `k8s`
backend of the `trained` step) inside a Dagster materialization launches the training pod
from the project's image (`make image`) on an advertised GPU through `PipesK8sClient`; the pod
reads the training set, trains, logs to MLflow and reports back over Pipes (pod logs read
through the API server and the kubelet). Asserted: one materialization with the pod's metrics,
one MLflow metric point per epoch in the run the step created, the model logged, the pod asked
for `nvidia.com/gpu: 1` and was placed by the scheduler. Code sync is off here: the pod checks
that the image holds this checkout's code and tags the run with its hash.

Real: the cluster, the image, Dagster Pipes, an `mlflow server` and an HTTP file server on the
node's address (the pod reaches them as it would reach the chart's MLflow and S3). Faked: the
GPU (advertised, not present: torch trains on the CPU)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import kubernetes
import pandas as pd
import pytest

from ml_platform.compute.code_package import package_hash
from ml_platform.compute.k8s import K8sPodTrainer
from ml_platform.compute.request import TrainingRequest
from ml_platform.ml.features import build_features
from ml_platform.ml.training_set import make_training_set
from ml_platform.simulation.bookings import generate_bookings
from ml_platform.tracking.server import free_port, is_healthy
from ml_platform_tests.cluster.local import GPU, PROJECT_IMAGE, kubeconfig_path, namespace

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
EPOCHS = 3


def _node_ip(api: kubernetes.client.CoreV1Api) -> str:
    (node,) = api.list_node().items
    return next(a.address for a in node.status.addresses if a.type == "InternalIP")


@pytest.fixture(scope="module")
def ns(api: kubernetes.client.CoreV1Api) -> Iterator[str]:
    with namespace(api, "mlp-train") as name:
        yield name


@pytest.fixture(scope="module")
def served(api: kubernetes.client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, str]]:
    """On the node's address, where pods reach the host: an `mlflow server` (SQLite, artifacts
    served) and a file server holding a frozen training set."""
    ip, root = _node_ip(api), tmp_path_factory.mktemp("served")
    raw = pd.concat([generate_bookings(dt.date(2024, 5, 1) + dt.timedelta(days=i), 500)
                     for i in range(3)], ignore_index=True)
    feats = build_features("bookings", raw, key="booking_id", date_column="booking_date",
                           target="nightly_price")
    make_training_set(feats, key="booking_id", valid_fraction=0.15, test_fraction=0.15,
                      seed=7).to_parquet(root / "training_set.parquet")
    mlflow_port, files_port = free_port(), free_port()
    hosts = ",".join(f"{h},{h}:*" for h in (ip, "localhost", "127.0.0.1"))
    log = (root / "mlflow.log").open("w")
    procs = [
        subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", ip, "--port",
                          str(mlflow_port), "--workers", "1",
                          "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                          "--artifacts-destination", str(root / "artifacts")],
                         env={**os.environ, "MLFLOW_SERVER_ALLOWED_HOSTS": hosts,
                              "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                         stdout=subprocess.DEVNULL, stderr=log),
        subprocess.Popen([sys.executable, "-m", "http.server", "--bind", ip, "--directory",
                          str(root), str(files_port)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
    ]
    url = f"http://{ip}:{mlflow_port}"
    try:
        deadline = time.monotonic() + 180
        while not is_healthy(url):
            assert time.monotonic() < deadline, (root / "mlflow.log").read_text()[-2000:]
            time.sleep(1)
        yield {"mlflow": url, "training_set": f"http://{ip}:{files_port}/training_set.parquet"}
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:  # a file server busy sending to a pod
                proc.kill()
                proc.wait(30)
        log.close()


def test_training_step_runs_in_a_gpu_pod(api: kubernetes.client.CoreV1Api, ns: str,
                                         served: dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(served["mlflow"])
    run_id = client.create_run(client.create_experiment(f"cluster-{ns}")).info.run_id
    request = TrainingRequest(
        model="listing_price", task="regression", feature_builder="bookings",
        target="nightly_price", training_set_uri=served["training_set"], mlflow_run_id=run_id,
        checkpoint_dir="", hidden=[32, 32], epochs=EPOCHS, batch_size=128, learning_rate=3e-3,
        seed=1, pip_requirements=["torch", "mlflow"])
    trainer = K8sPodTrainer(
        compute={"listing_price": {"cpu": "1", "memory": "2Gi", "gpu": 1, "image": PROJECT_IMAGE}},
        namespace=ns, image_pull_policy="Never", poll_interval_s=1.0, pod_wait_timeout_s=300,
        code_sync=False)  # the image's code (`cluster/test_code_sync.py` ships it)

    @dg.asset
    def trained(context) -> dg.MaterializeResult:  # no hint: `from __future__` makes it a string
        summary = trainer.train(context, request, env={"MLFLOW_TRACKING_URI": served["mlflow"]})
        return dg.MaterializeResult(metadata={k: v for k, v in summary.items()
                                              if isinstance(v, int | float | str)})

    # Outside a pod, PipesK8sClient loads the default kubeconfig, whose path the kubernetes
    # package fixes at import from $KUBECONFIG: point it at the local cluster's.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION",
                        str(kubeconfig_path()))
    started = time.monotonic()
    with _pods_seen(api, ns) as pods:  # PipesK8sClient deletes its pod when the step ends
        result = dg.materialize([trained], instance=dg.DagsterInstance.ephemeral())
    print(f"training step on the cluster: {time.monotonic() - started:.0f}s")
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = {k: getattr(v, "value", v) for k, v in
            event.event_specific_data.materialization.metadata.items()}
    assert meta["epochs"] == EPOCHS and meta["test_mae"] > 0

    (pod,) = pods.values()
    print(f"training pod {pod.metadata.name}: phase {pod.status.phase} on {pod.spec.node_name}")
    (container,) = pod.spec.containers
    assert container.resources.limits[GPU] == "1" and container.image == PROJECT_IMAGE
    assert pod.spec.node_name and pod.metadata.labels["ml-platform/model"] == "listing_price"
    run = client.get_run(run_id)
    assert run.data.tags["ml_platform.model_uri"] == meta["model_uri"]
    # Code sync off: the pod checked that the image's code is this checkout's, and ran it.
    assert run.data.tags["ml_platform.code_source"] == "image"
    assert run.data.tags["ml_platform.code_package"] == package_hash()
    history = client.get_metric_history(run_id, "valid_mae")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))


@contextlib.contextmanager
def _pods_seen(api: kubernetes.client.CoreV1Api, ns: str) -> Iterator[dict[str, Any]]:
    """The last state of every pod seen in `ns` while the block runs (polled twice a second)."""
    seen: dict[str, Any] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            for pod in api.list_namespaced_pod(ns).items:
                seen[pod.metadata.name] = pod

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
