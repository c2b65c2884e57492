"""The Kubernetes compute backend: the training entrypoint in its own pod (Dagster Pipes).

The run worker stays a light CPU pod; only the training step gets a pod shaped by the model's
`ComputeSpec` (GPUs, cpu/memory, node selector, tolerations, image). `K8sPodTrainer.train` and
`ml-platform k8s render` build that pod with the same functions, so what `render` prints is
what `dagster_k8s.PipesK8sClient` submits (bar the pod name's run id and the per-run Pipes
variables).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import dagster as dg

from ml_platform.compute.local import ENTRYPOINT
from ml_platform.compute.request import TrainingRequest
from ml_platform.specs import ComputeSpec, ModelSpec

POD_ENV = "ML_PLATFORM_TRAINING_POD"  # JSON of K8sPodTrainer fields, set by the Helm chart
SCRATCH = "/tmp"  # an emptyDir: the root filesystem is read-only
CONTAINER = "training"
GPU_RESOURCE = "nvidia.com/gpu"
PIPES_PLACEHOLDER = "<set by Dagster Pipes when the step runs>"


class K8sPodTrainer(dg.ConfigurableResource):
    """Runs `python -m ml_platform.compute.entrypoint` in a Kubernetes pod requesting what the
    model's `ComputeSpec` asks for, and returns what it reported over Dagster Pipes."""

    compute: dict[str, dict[str, Any]] = {}
    """`ComputeSpec` of each model, by model name (filled from the specs)."""
    namespace: str | None = None
    """Default: the run pod's own namespace."""
    image: str | None = None
    """Overrides every spec's image: the chart sets the image the code location runs."""
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: list[str] = []
    service_account_name: str | None = None
    env_secrets: list[str] = []
    """Existing Secrets exposed whole as environment (`envFrom`), e.g. S3 and MLflow credentials."""
    env_config_maps: list[str] = []
    node_selector: dict[str, str] = {}
    """Cluster-wide, e.g. a GPU node pool; a spec's own keys win."""
    tolerations: list[dict[str, Any]] = []
    priority_class_name: str | None = None
    run_as_user: int = 10001
    shm_size: str = "1Gi"
    """Memory-backed /dev/shm for data-loader workers (counts against the memory limit)."""
    pod_wait_timeout_s: float = 24 * 3600.0
    poll_interval_s: float = 5.0

    @classmethod
    def from_env(cls, specs: Sequence[ModelSpec]) -> K8sPodTrainer:
        """The trainer for `specs`, with cluster settings from `$ML_PLATFORM_TRAINING_POD`."""
        raw = os.environ.get(POD_ENV, "").strip()
        settings = json.loads(raw) if raw else {}
        if not isinstance(settings, dict):
            raise ValueError(f"{POD_ENV} must be a JSON object, got {raw[:80]!r}")
        compute = {s.name: s.compute.model_dump(mode="json", exclude_none=True) for s in specs}
        return cls(compute=compute, **settings)

    def compute_for(self, model: str) -> ComputeSpec:
        if model not in self.compute:
            raise ValueError(f"no ComputeSpec for model {model!r}; known: {sorted(self.compute)}")
        return ComputeSpec.model_validate(self.compute[model])

    def launch_args(self, request: TrainingRequest) -> dict[str, Any]:
        """`base_pod_meta` and `base_pod_spec` for `PipesK8sClient.run` (camelCase)."""
        if getattr(request, "nodes", 1) > 1:
            raise ValueError(f"{request.model}: a multi-node request (nodes > 1) needs the "
                             "distributed backend; K8sPodTrainer runs one pod")
        compute = self.compute_for(request.model)
        return {"base_pod_meta": training_pod_meta(compute, request),
                "base_pod_spec": training_pod_spec(compute, request, self)}

    def train(self, context: dg.AssetExecutionContext, request: TrainingRequest,
              env: dict[str, str]) -> dict[str, Any]:
        from dagster_k8s import PipesK8sClient

        request = pod_request(request)
        compute = self.compute_for(request.model)
        context.log.info(f"training {request.model} in a pod: {compute.gpu} GPU, "
                         f"cpu {compute.cpu}, memory {compute.memory}")
        invocation = PipesK8sClient(poll_interval=self.poll_interval_s).run(
            context=context,
            extras=request.to_extras(),
            namespace=self.namespace,
            env=env,
            pod_wait_timeout=self.pod_wait_timeout_s,
            **self.launch_args(request),
        )
        result = invocation.get_materialize_result()
        return {k: getattr(v, "value", v) for k, v in (result.metadata or {}).items()}


def pod_request(request: TrainingRequest) -> TrainingRequest:
    """The request as the pod sees it: checkpoints go to the pod's scratch volume (they also
    reach MLflow as artifacts), not to a path of the orchestrator's filesystem."""
    return dataclasses.replace(
        request, checkpoint_dir=f"{SCRATCH}/checkpoints/{request.model}/{request.mlflow_run_id}")


def _command(request: TrainingRequest) -> list[str]:
    """The entrypoint, or `torchrun` over the pod's GPUs when the request asks for several
    processes on one node (the request knows how to start itself, as in the local backend)."""
    command = getattr(request, "command", None)
    return list(command("python")) if command else ["python", "-m", ENTRYPOINT]


def _merge_tolerations(*groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for toleration in (t for group in groups for t in group):
        if dict(toleration) not in seen:
            seen.append(dict(toleration))
    return seen


def training_pod_meta(compute: ComputeSpec, request: TrainingRequest) -> dict[str, Any]:
    """Labels and annotations of the training pod: which model, which MLflow run."""
    return {
        "labels": {
            "app.kubernetes.io/name": "ml-platform",
            "app.kubernetes.io/component": "training",
            "ml-platform/model": request.model,
            "ml-platform/gpu": str(compute.gpu),
        },
        "annotations": {"ml-platform/mlflow-run-id": request.mlflow_run_id},
    }


def training_pod_spec(compute: ComputeSpec, request: TrainingRequest,
                      trainer: K8sPodTrainer) -> dict[str, Any]:
    """The pod spec of one training run (camelCase, as in a manifest): pure, no cluster needed.

    GPUs are limits only (Kubernetes sets the request equal); cpu and memory are requested and
    limited as the spec says. Credentials reach the pod only from existing Secrets by name.
    """
    limits: dict[str, str] = {"cpu": compute.cpu, "memory": compute.memory}
    if compute.gpu > 0:
        limits[GPU_RESOURCE] = str(compute.gpu)
    env_from = [{"secretRef": {"name": s}} for s in trainer.env_secrets]
    env_from += [{"configMapRef": {"name": c}} for c in trainer.env_config_maps]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": trainer.image or compute.image,
        "imagePullPolicy": trainer.image_pull_policy,
        "command": _command(request),
        "resources": {"requests": {"cpu": compute.cpu, "memory": compute.memory}, "limits": limits},
        "env": [
            {"name": "HOME", "value": SCRATCH},
            {"name": "ML_PLATFORM_HOME", "value": f"{SCRATCH}/ml-platform"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if env_from:
        container["envFrom"] = env_from
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # Dagster's retry policy retries the step, not the kubelet
        "automountServiceAccountToken": False,  # training never talks to the Kubernetes API
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": trainer.run_as_user,
            "runAsGroup": trainer.run_as_user,
            "fsGroup": trainer.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": trainer.shm_size}}],
    }
    node_selector = {**trainer.node_selector, **compute.node_selector}
    if node_selector:
        spec["nodeSelector"] = node_selector
    tolerations = _merge_tolerations(trainer.tolerations, compute.tolerations)
    if tolerations:
        spec["tolerations"] = tolerations
    if trainer.service_account_name:
        spec["serviceAccountName"] = trainer.service_account_name
    if trainer.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in trainer.image_pull_secrets]
    if trainer.priority_class_name:
        spec["priorityClassName"] = trainer.priority_class_name
    return spec


def placeholder_request(spec: ModelSpec) -> TrainingRequest:
    """The request `trained` would send for `spec`, with run-time values as placeholders."""
    tr = spec.training
    values: dict[str, Any] = dict(
        model=spec.name, task=tr.task, feature_builder=tr.feature_builder, target=tr.target,
        training_set_uri="<lake URI of the training set>", mlflow_run_id="<mlflow-run-id>",
        checkpoint_dir="", hidden=list(tr.hidden), epochs=tr.epochs, batch_size=tr.batch_size,
        learning_rate=tr.learning_rate, weight_decay=tr.weight_decay, seed=tr.seed,
        shuffle_labels=tr.shuffle_labels,
    )
    fields = TrainingRequest.__dataclass_fields__
    if "processes" in fields:  # one pod: its processes (one per GPU by default)
        values["processes"] = getattr(spec.compute, "processes", 1)
    return TrainingRequest(**values)


def render_training_pod(spec: ModelSpec, trainer: K8sPodTrainer | None = None, *,
                        namespace: str | None = None) -> dict[str, Any]:
    """The Pod manifest the `trained` step of `spec` submits, as a plain dict.

    Built by `dagster_k8s.pipes.build_pod_body`, the function `PipesK8sClient.run` uses, from
    the same `launch_args`; the run id in the name and the Pipes variables are placeholders.
    """
    import kubernetes
    from dagster_k8s.pipes import build_pod_body, get_pod_name
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR

    trainer = trainer or K8sPodTrainer.from_env([spec])
    request = pod_request(placeholder_request(spec))
    op_name = dg.AssetKey([spec.name, "trained"]).to_python_identifier()
    pod_name = re.sub(r"\d{10}$", "0" * 10, get_pod_name("0" * 18, op_name))
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "<MLFLOW_TRACKING_URI of the run>")
    body = build_pod_body(
        pod_name=pod_name, image=None, command=None,
        env_vars={DAGSTER_PIPES_CONTEXT_ENV_VAR: PIPES_PLACEHOLDER,
                  DAGSTER_PIPES_MESSAGES_ENV_VAR: PIPES_PLACEHOLDER,
                  "MLFLOW_TRACKING_URI": tracking},
        **trainer.launch_args(request),
    )
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(body)
    manifest = {"apiVersion": "v1", "kind": "Pod", **manifest}
    if namespace or trainer.namespace:
        manifest["metadata"]["namespace"] = namespace or trainer.namespace
    return manifest
