"""Offline Kubernetes tooling for the tests: the chart rendered by a real `helm` binary and every
object validated against the Kubernetes JSON schemas shipped in `kubernetes-validate` (strict:
unknown fields fail). No cluster is involved."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from ml_platform_tests.services import REPO

K8S_VERSION = "1.33.0"  # a version kubernetes-validate ships schemas for
CHART = REPO / "helm" / "ml-platform"
VALUES = {
    "default": [],
    "external-postgres": [CHART / "values-external-postgres.yaml"],
    "gpu-pool": [CHART / "values-gpu-pool.yaml"],
}
RELEASE, NAMESPACE = "mlp", "ml-platform"


@functools.cache
def helm() -> str:
    """The helm binary: .tools/bin/helm, else PATH, else installed by the repo's script."""
    local = REPO / ".tools" / "bin" / "helm"
    if not local.exists() and shutil.which("helm"):
        return str(shutil.which("helm"))
    if not local.exists():
        subprocess.run(["bash", str(REPO / "scripts" / "install_k8s_tools.sh")], check=True)
    return str(local)


def helm_run(*args: str | Path) -> str:
    done = subprocess.run([helm(), *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"helm {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@functools.cache
def render(variant: str) -> tuple[dict[str, Any], ...]:
    """`helm template` of the chart with the values files of `variant`, parsed."""
    flags = [a for f in VALUES[variant] for a in ("-f", f)]
    text = helm_run("template", RELEASE, CHART, "--namespace", NAMESPACE, *flags)
    return tuple(d for d in yaml.safe_load_all(text) if d)


def validate(obj: dict[str, Any]) -> None:
    """Raise unless `obj` is valid against the Kubernetes schemas (strict)."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def pod_specs(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`Kind/name`, pod spec) of every workload among `objects`."""
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Pod":
            yield where, obj["spec"]
        elif obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
            yield where, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield where, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def config_map(objects: tuple[dict[str, Any], ...], suffix: str) -> dict[str, str]:
    (found,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith(suffix)]
    return found["data"]
