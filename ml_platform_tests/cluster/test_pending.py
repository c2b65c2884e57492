"""A training pod that cannot start fails its step within the model's `compute.max_pending`,
naming the reason the cluster gives: on the real local cluster, `K8sPodTrainer.train` in a
Dagster materialization submits a pod asking for more GPUs than the node advertises, one with a
node selector no node has, and one whose image cannot be pulled. Asserted for each: the step
fails (no retry) with the scheduler's or the kubelet's reason in its error and in its log, and
the pod is deleted (nothing waits for a GPU afterwards). And a spec asking for several nodes
is refused on this 1.20 cluster (no Indexed Jobs) before anything is created.

Real: the cluster (API server, scheduler, kubelet), Dagster Pipes' client. Faked: the GPUs
(2 advertised by the node). The pod never runs, so the request's URIs are placeholders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import dagster as dg
import kubernetes
import pytest

from ml_platform.compute.k8s import K8sPodTrainer
from ml_platform.compute.request import TrainingRequest
from ml_platform.compute.trainer import training_env
from ml_platform_tests.cluster.local import PROJECT_IMAGE, kubeconfig_path, namespace, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
MAX_PENDING = 15


@pytest.fixture(scope="module")
def ns(api: kubernetes.client.CoreV1Api) -> Iterator[str]:
    with namespace(api, "mlp-pending") as name:
        yield name


@pytest.mark.parametrize(("compute", "reason"), [
    ({"gpu": 3}, "Insufficient nvidia.com/gpu"),
    ({"gpu": 1, "node_selector": {"ml-platform/pool": "a100"}},
     "didn't match (node selector|Pod's node affinity)"),  # 1.20 says "node affinity"
    ({"gpu": 1, "image": "localhost:5999/ml-platform/no-such-image:1"}, "(ErrImagePull|ImagePullBackOff)"),
], ids=["gpus", "node-selector", "image"])
def test_a_pod_that_cannot_start_fails_the_step_naming_why(
        api: kubernetes.client.CoreV1Api, ns: str, monkeypatch: pytest.MonkeyPatch,
        compute: dict[str, Any], reason: str) -> None:
    request = TrainingRequest(
        model="listing_price", task="regression", feature_builder="bookings",
        target="nightly_price", training_set_uri="http://nowhere/ts.parquet", mlflow_run_id="r0",
        checkpoint_dir="", hidden=[8], epochs=1, batch_size=8, learning_rate=1e-3, seed=1,
        pip_requirements=["torch"])
    trainer = K8sPodTrainer(
        compute={"listing_price": {"cpu": "100m", "memory": "256Mi", "image": PROJECT_IMAGE,
                                   "max_pending": MAX_PENDING, **compute}},
        namespace=ns, shm_size="64Mi", poll_interval_s=1.0, code_sync=False)

    @dg.asset(key=["listing_price", "trained"])
    def trained(context) -> None:  # no hint: `from __future__` makes it a string
        trainer.train(context, request, env=training_env("http://nowhere:5000"))

    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION",
                        str(kubeconfig_path()))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([trained], instance=instance, raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = str(failure.step_failure_data.error)
    print(f"{compute}: {error.splitlines()[0]}")
    assert f"still Pending after {MAX_PENDING}s (compute.max_pending)" in error
    assert re.search(reason, error)
    assert any(re.search(reason, r.user_message) for r in instance.all_logs(result.run_id))
    # a pod in image-pull back-off goes within its grace period, slower on a loaded node
    wait_for(lambda: not api.list_namespaced_pod(ns).items, 180, "the pending pod to be deleted")


def test_multi_node_is_refused_before_anything_is_created_on_1_20(
        api: kubernetes.client.CoreV1Api, ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec asking for 2 nodes on this 1.20 cluster (no Indexed Jobs): the step fails at once
    naming the model, `compute.nodes` and both versions, and creates no Service, Job or pod."""
    request = TrainingRequest(
        model="listing_price", task="regression", feature_builder="bookings",
        target="nightly_price", training_set_uri="http://nowhere/ts.parquet", mlflow_run_id="r1",
        checkpoint_dir="", hidden=[8], epochs=1, batch_size=8, learning_rate=1e-3, seed=1,
        nodes=2, processes=1, pip_requirements=["torch"])
    trainer = K8sPodTrainer(
        compute={"listing_price": {"cpu": "100m", "memory": "256Mi", "gpu": 1, "nodes": 2,
                                   "image": PROJECT_IMAGE}},
        namespace=ns, shm_size="64Mi", poll_interval_s=1.0, code_sync=False)

    @dg.asset(key=["listing_price", "trained"])
    def trained(context) -> None:
        trainer.train(context, request, env=training_env("http://nowhere:5000"))

    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION",
                        str(kubeconfig_path()))
    result = dg.materialize([trained], raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = str(failure.step_failure_data.error)
    assert "model listing_price asks for compute.nodes=2" in error
    assert "Kubernetes >= 1.24, but this cluster is 1.20" in error
    assert not api.list_namespaced_pod(ns).items and not api.list_namespaced_service(ns).items
