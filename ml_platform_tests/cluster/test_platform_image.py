"""The project's image (`make image`: the Dockerfile built with buildah, imported into the local
cluster's containerd) on the real local cluster: a GPU pod from it imports
`ml_platform.definitions` and its log comes back through the API server (`kubectl logs`'s
path: API server -> kubelet on the node address); GPU pods that finish on their own free their
GPU, and the pod waiting with `Insufficient nvidia.com/gpu` then runs; the cluster DNS answers
Service names from a pod.

Faked: the GPUs (advertised by the node, not present). Needs `make image` first: without the
image the pods fail with ErrImageNeverPull, and the test says so."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from ml_platform_tests.cluster.local import (
    PROJECT_IMAGE,
    gpu_pod,
    namespace,
    phase,
    pod_log,
    unschedulable_reason,
    wait_for,
)

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def ns(api: kubernetes.client.CoreV1Api) -> Any:
    with namespace(api, "mlp-image") as name:
        yield name


def _python_pod(name: str, code: str) -> dict[str, Any]:
    pod = gpu_pod(name, image=PROJECT_IMAGE, command=["python", "-c", code])
    container = pod["spec"]["containers"][0]
    container["securityContext"]["runAsUser"] = 10001  # the image's user, as the chart runs it
    container["resources"]["limits"].update(cpu="1", memory="1Gi")
    container["resources"]["requests"].update(cpu="100m", memory="256Mi")
    return pod


def _finished(api: kubernetes.client.CoreV1Api, ns: str, name: str) -> str | None:
    pod = api.read_namespaced_pod(name, ns)
    for status in pod.status.container_statuses or []:
        waiting = status.state.waiting
        if waiting and waiting.reason in {"ErrImageNeverPull", "ErrImagePull", "InvalidImageName"}:
            raise AssertionError(f"{PROJECT_IMAGE} is not in the cluster ({waiting.reason}): "
                                 "run `make image` first")
    return pod.status.phase if pod.status.phase in {"Succeeded", "Failed"} else None


def test_pod_from_the_image_imports_the_definitions(api: kubernetes.client.CoreV1Api, ns: str) -> None:
    code = ("import ml_platform.definitions, torch; "
            "print('definitions loaded; torch', torch.__version__)")
    api.create_namespaced_pod(ns, _python_pod("definitions", code))
    outcome = wait_for(lambda: _finished(api, ns, "definitions"), 300, "the definitions pod to end")
    log = pod_log(api, ns, "definitions")
    assert outcome == "Succeeded", log
    pod = api.read_namespaced_pod("definitions", ns)
    started = pod.status.container_statuses[0].state.terminated.started_at
    print(f"definitions: created -> container started in "
          f"{(started - pod.metadata.creation_timestamp).total_seconds():.0f}s (1 s resolution)")
    assert "definitions loaded; torch 2.13.0" in log


def test_finished_gpu_pods_free_their_gpus(api: kubernetes.client.CoreV1Api, ns: str) -> None:
    names = ["short-a", "short-b", "short-c"]
    for name in names:  # each holds its GPU for a few seconds, then ends by itself
        api.create_namespaced_pod(ns, _python_pod(name, "import time; time.sleep(8)"))
    waiting = wait_for(lambda: [n for n in names if unschedulable_reason(api, ns, n)], 60,
                       "one pod to wait for a GPU")
    assert len(waiting) == 1
    assert "Insufficient nvidia.com/gpu" in unschedulable_reason(api, ns, waiting[0])
    for name in names:
        assert wait_for(lambda n=name: _finished(api, ns, n), 300, f"{name} to end") == "Succeeded"
    assert {phase(api, ns, n) for n in names} == {"Succeeded"}


def test_cluster_dns_answers_service_names(api: kubernetes.client.CoreV1Api, ns: str) -> None:
    """dnsmasq, fed with the Services, answers `*.svc.cluster.local` (the pod's search path
    completes short names), as CoreDNS would."""
    api.create_namespaced_service(ns, {"metadata": {"name": "mlflow-like"},
                                       "spec": {"ports": [{"port": 5000}], "selector": {"x": "y"}}})
    cluster_ip = api.read_namespaced_service("mlflow-like", ns).spec.cluster_ip
    code = ("import socket, time\n"
            "for name in ('mlflow-like', f'mlflow-like.{NS}.svc.cluster.local', 'kubernetes.default'):\n"
            "    for _ in range(20):\n"
            "        try:\n"
            "            print(name, socket.gethostbyname(name)); break\n"
            "        except OSError:\n"
            "            time.sleep(0.5)\n").replace("{NS}", ns)
    pod = _python_pod("dns", code)
    pod["spec"]["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu")
    api.create_namespaced_pod(ns, pod)
    assert wait_for(lambda: _finished(api, ns, "dns"), 120, "the dns pod to end") == "Succeeded"
    lines = set(pod_log(api, ns, "dns").splitlines())
    assert {f"mlflow-like {cluster_ip}", f"mlflow-like.{ns}.svc.cluster.local {cluster_ip}",
            "kubernetes.default 10.96.0.1"} <= lines, lines
