"""The local cluster (`make cluster-up`, scripts/cluster/) as the cluster tests see it: its
kubeconfig, a Kubernetes API client, a namespace per test module, pods and their scheduling."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes

GPU = "nvidia.com/gpu"
# Built by scripts/cluster/build.sh and imported into containerd by cluster-up: the only image
# present without `make image` (a static `pause`, runs until it gets SIGTERM).
PAUSE_IMAGE = "registry.local/ml-platform/pause:3.4"
PROJECT_IMAGE = os.environ.get("ML_PLATFORM_IMAGE", "localhost/ml-platform:dev")


def kubeconfig_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("ML_PLATFORM_KUBECONFIG",
                               cache / "ml-platform" / "cluster" / "kubeconfig"))


def core_api() -> kubernetes.client.CoreV1Api:
    """A client of the local cluster; a clear error when it is not up."""
    path = kubeconfig_path()
    if not path.exists():
        raise RuntimeError(f"no local cluster: {path} is missing; start it with `make cluster-up`")
    client = kubernetes.config.new_client_from_config(config_file=str(path))
    return kubernetes.client.CoreV1Api(client)


@contextlib.contextmanager
def namespace(api: kubernetes.client.CoreV1Api, prefix: str) -> Iterator[str]:
    """A fresh namespace for the block (with its default ServiceAccount), deleted after it."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    api.create_namespace({"metadata": {"name": name}})
    try:
        wait_for(lambda: api.list_namespaced_service_account(name).items, 60,
                 f"the default ServiceAccount of {name}")
        yield name
    finally:
        api.delete_namespace(name, grace_period_seconds=0)
        # Pods keep their GPUs until they are gone: the next module must start from zero.
        wait_for(lambda: not api.list_namespaced_pod(name).items, 120, f"the pods of {name} to go")


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def gpu_pod(name: str, gpus: int = 1, image: str = PAUSE_IMAGE,
            command: list[str] | None = None) -> dict[str, Any]:
    """A pod asking for `gpus` nvidia.com/gpu (limits only, as training pods do)."""
    container: dict[str, Any] = {
        "name": "main", "image": image, "imagePullPolicy": "Never",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"cpu": "100m", "memory": "64Mi", GPU: str(gpus)}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "runAsUser": 65535, "capabilities": {"drop": ["ALL"]}},
    }
    if command:
        container["command"] = command
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "ml-platform-tests"}},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 5, "containers": [container]}}


def phase(api: kubernetes.client.CoreV1Api, ns: str, name: str) -> str:
    return api.read_namespaced_pod(name, ns).status.phase


def unschedulable_reason(api: kubernetes.client.CoreV1Api, ns: str, name: str) -> str | None:
    """The scheduler's message on a Pending pod (condition PodScheduled=False), if any."""
    for condition in api.read_namespaced_pod(name, ns).status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return condition.message
    return None


def pod_log(api: kubernetes.client.CoreV1Api, ns: str, name: str) -> str:
    """The pod's log as text (the generated client returns a bytes repr for this call)."""
    response = api.read_namespaced_pod_log(name, ns, _preload_content=False)
    return response.data.decode()


def node_gpus(api: kubernetes.client.CoreV1Api) -> int:
    (node,) = api.list_node().items
    return int(node.status.allocatable.get(GPU, "0"))
