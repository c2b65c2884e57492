"""GPU scheduling on the real local cluster (Kubernetes 1.20 from `make cluster-up`): the node
advertises 2 `nvidia.com/gpu` (an extended resource patched into its status; no real GPU), and
the real scheduler and kubelet place and run pods asking for them. Covered: a pod asking
`nvidia.com/gpu: 1` schedules and runs; three at once on 2 GPUs -> two run, the third stays
Pending with the scheduler's reason `Insufficient nvidia.com/gpu` and runs once a GPU is freed;
the training pod `ml-platform k8s render` prints is accepted by the API server, scheduled, and
stored as rendered (the cluster only adds defaults).

Faked: the GPUs themselves (advertised, not present; containers run on the CPU). The
containers run the cluster's static `pause` image; the platform's own image is covered by
test_platform_image.py."""

from __future__ import annotations

import json
import time
from typing import Any

import kubernetes
import pytest
import yaml

from ml_platform_tests.cluster.local import (
    GPU,
    gpu_pod,
    namespace,
    node_gpus,
    phase,
    unschedulable_reason,
    wait_for,
)
from ml_platform_tests.cluster.pods import not_kept

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def ns(api: kubernetes.client.CoreV1Api) -> Any:
    with namespace(api, "mlp-gpu") as name:
        yield name


def test_node_advertises_two_gpus(api: kubernetes.client.CoreV1Api) -> None:
    assert node_gpus(api) == 2


def test_gpu_pod_schedules_and_runs(api: kubernetes.client.CoreV1Api, ns: str) -> None:
    started = time.monotonic()
    api.create_namespaced_pod(ns, gpu_pod("one-gpu"))
    wait_for(lambda: phase(api, ns, "one-gpu") == "Running", 120, "one-gpu to run")
    print(f"one-gpu: created -> Running in {time.monotonic() - started:.1f}s")
    pod = api.read_namespaced_pod("one-gpu", ns)
    assert pod.spec.node_name  # placed by the scheduler
    assert pod.spec.containers[0].resources.limits[GPU] == "1"
    assert pod.spec.containers[0].resources.requests[GPU] == "1"  # defaulted from the limit
    api.delete_namespaced_pod("one-gpu", ns)
    wait_for(lambda: not [p for p in api.list_namespaced_pod(ns).items
                          if p.metadata.name == "one-gpu"], 60, "one-gpu to go")


def test_third_gpu_pod_waits_for_a_free_gpu(api: kubernetes.client.CoreV1Api, ns: str) -> None:
    names = ["train-a", "train-b", "train-c"]
    for name in names:
        api.create_namespaced_pod(ns, gpu_pod(name))

    def settled() -> tuple[list[str], list[str]] | None:
        phases = {n: phase(api, ns, n) for n in names}
        running = sorted(n for n, p in phases.items() if p == "Running")
        pending = sorted(n for n, p in phases.items() if p == "Pending" and unschedulable_reason(api, ns, n))
        return (running, pending) if len(running) == 2 and len(pending) == 1 else None

    running, (waiting,) = wait_for(settled, 120, "two GPU pods running and one unschedulable")
    reason = unschedulable_reason(api, ns, waiting)
    print(f"{waiting} Pending: {reason}")
    assert "Insufficient nvidia.com/gpu" in reason
    assert api.read_namespaced_pod(waiting, ns).spec.node_name is None

    # A training finishes: its pod ends (pause exits 0 on SIGTERM) and gives its GPU back.
    api.delete_namespaced_pod(running[0], ns)
    wait_for(lambda: phase(api, ns, waiting) == "Running", 120, f"{waiting} to run on the freed GPU")
    still = {n: phase(api, ns, n) for n in names if n != running[0]}
    assert still == {running[1]: "Running", waiting: "Running"}
    for name in (running[1], waiting):
        api.delete_namespaced_pod(name, ns)


def test_rendered_training_pod_is_what_the_cluster_stores(
        api: kubernetes.client.CoreV1Api, ns: str, run_cli: Any) -> None:
    """`ml-platform k8s render listing_price` -> the real API server: accepted, scheduled on an
    advertised GPU, and stored with every rendered field unchanged."""
    rendered = run_cli("k8s", "render", "listing_price", "--namespace", ns)
    (pod,) = [d for d in yaml.safe_load_all(rendered) if d]
    assert pod["spec"]["containers"][0]["resources"]["limits"][GPU] == "1"
    name = pod["metadata"]["name"]
    api.create_namespaced_pod(ns, pod)
    stored = api.api_client.sanitize_for_serialization(api.read_namespaced_pod(name, ns))
    differences = list(not_kept(pod, stored))
    assert not differences, json.dumps(differences, indent=1)
    # The scheduler places it on the node's advertised GPUs (its image is not in the cluster:
    # running it is test_platform_image.py's job with the image `make image` builds).
    wait_for(lambda: api.read_namespaced_pod(name, ns).spec.node_name, 60, f"{name} to be scheduled")
    api.delete_namespaced_pod(name, ns, grace_period_seconds=0)

