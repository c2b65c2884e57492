"""The Kubernetes compute backend: the training entrypoint in its own pod (Dagster Pipes).

The run worker stays a light CPU pod; only the training step gets a pod shaped by the model's
`ComputeSpec` (GPUs, cpu/memory, node selector, tolerations, image). `K8sPodTrainer.train` and
`ml-platform k8s render` build that pod with the same functions, so what `render` prints is
what `dagster_k8s.PipesK8sClient` submits (bar the pod name's run id and the per-run Pipes
variables).

Multi-node training (`compute.nodes` > 1) adds, for the duration of the step, an Indexed Job
of the other nodes' pods (same pod spec) and a headless Service naming node 0's pod, where
torchrun's static rendezvous meets: node 0 is the Pipes pod and runs global rank 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import dagster as dg

from ml_platform import names
from ml_platform.compute import code_package
from ml_platform.compute.code_package import CodeStore, Shipment
from ml_platform.compute.code_sync import REFUSED
from ml_platform.compute.request import TrainingRequest
from ml_platform.compute.trainer import Trainer, training_env
from ml_platform.faults import first_line
from ml_platform.specs import ComputeSpec, ModelSpec

POD_ENV = "ML_PLATFORM_TRAINING_POD"  # JSON of K8sPodTrainer fields, set by the Helm chart
SCRATCH = "/tmp"  # an emptyDir: the root filesystem is read-only
CONTAINER = "training"
GPU_RESOURCE = "nvidia.com/gpu"
PIPES_PLACEHOLDER = "<set by Dagster Pipes when the step runs>"
CODE_SYNC = "ml_platform.compute.code_sync"  # the pod's first command (see that module)
RENDEZVOUS_PORT = 29500
PLACEHOLDER_ATTEMPT = "00000000-0"  # <Dagster run id[:8]>-<retry number> when the step runs
# Worker pod i of the Indexed Job is node i + 1 (node 0 is the Pipes pod); torchrun reads
# --node-rank from $PET_NODE_RANK. "$@" keeps the command an argv list: nothing is re-quoted.
WORKER_SHELL = 'export PET_NODE_RANK=$((JOB_COMPLETION_INDEX + 1)) && exec "$@"'


class K8sPodTrainer(Trainer):
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
    scheduler_name: str | None = None
    """A scheduler other than the default (e.g. Volcano's), for every training pod."""
    runtime_class_name: str | None = None
    """A RuntimeClass (e.g. `nvidia` where the NVIDIA runtime is not the node's default)."""
    affinity: dict[str, Any] = {}
    """Pod affinity/anti-affinity and node affinity (manifest form), for every training pod."""
    pod_labels: dict[str, str] = {}
    """More labels on training pods (a queueing system's, e.g. Kueue's queue name); the spec's
    `compute.labels` win on a key."""
    pod_annotations: dict[str, str] = {}
    run_as_user: int = 10001
    shm_size: str = "1Gi"
    """Memory-backed /dev/shm for data-loader workers (counts against the memory limit)."""
    extra_volumes: list[dict[str, Any]] = []
    """More volumes (manifest form), e.g. the chart's CA bundle ConfigMap."""
    extra_volume_mounts: list[dict[str, Any]] = []
    code_sync: bool = True
    """Ship the orchestrator's code to the pods as a code package in the lake (no image build
    per change). Off (locked-down clusters): pods run the image's code, which must hash the
    same as the orchestrator's."""
    pod_wait_timeout_s: float = 24 * 3600.0
    """The whole training pod's limit, from creation to exit (`compute.max_pending` bounds
    its start)."""
    poll_interval_s: float = 1.0
    """How often the step reads the pod's state while it waits for it to start and to end:
    a read is one small API call, and every second spent between them is added to each
    training (five seconds made a quarter of the cluster inner loop)."""

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

    def launch_args(self, request: TrainingRequest, code: Shipment) -> dict[str, Any]:
        """`base_pod_meta` and `base_pod_spec` of node 0's pod for `PipesK8sClient.run`."""
        compute = self.compute_for(request.model)
        return {"base_pod_meta": training_pod_meta(compute, request, node_rank=0, trainer=self),
                "base_pod_spec": training_pod_spec(compute, request, self, code, node_rank=0)}

    def companions(self, request: TrainingRequest, code: Shipment) -> list[dict[str, Any]]:
        """What a multi-node request needs beside node 0's pod: the rendezvous Service and the
        Indexed Job of nodes 1..n-1 (manifests, camelCase). Nothing for one node."""
        if request.nodes == 1:
            return []
        compute = self.compute_for(request.model)
        return [rendezvous_service(request), worker_job(compute, request, self, code)]

    def ship_code(self, store: CodeStore | None, log: Any) -> Shipment:
        """The code the pods run: packaged and stored once per content hash (code sync), or the
        image's (checked by the pod)."""
        if self.code_sync and store is None:
            raise ValueError("code sync needs the lake to put the code package in; set "
                             "code_sync false (chart value training.codeSync) to run the "
                             "image's code")
        began = time.perf_counter()
        code = code_package.ship(store, sync=self.code_sync)
        if self.code_sync:
            what = (f"uploaded ({code.archive_bytes / 1e6:.2f} MB)" if code.uploaded
                    else "already in the lake")
            log.info(f"code package {code.code_hash[:12]} {what} in "
                     f"{time.perf_counter() - began:.2f}s")
        else:
            log.info(f"code sync off: the pods check that the image holds code {code.code_hash[:12]}")
        return code

    def train(self, context: dg.AssetExecutionContext, request: TrainingRequest,
              env: dict[str, str], code_store: CodeStore | None = None) -> dict[str, Any]:
        from dagster._core.errors import DagsterPipesExecutionError
        from dagster_k8s.client import DagsterK8sError, DagsterKubernetesClient
        from dagster_k8s.utils import detect_current_namespace
        from kubernetes.client import ApiException

        # Per attempt: a retried step never meets the pods of the attempt it replaces.
        request = pod_request(request, attempt=f"{context.run_id[:8]}-{context.retry_number}")
        compute = self.compute_for(request.model)
        code = self.ship_code(code_store, context.log)
        context.log.info(f"training {request.model} on {request.nodes} pod(s): {compute.gpu} GPU, "
                         f"cpu {compute.cpu}, memory {compute.memory} each")
        client = _start_limited_client_class()(
            poll_interval=self.poll_interval_s, max_pending_s=compute.max_pending,
            model=request.model)
        namespace = self.namespace or detect_current_namespace(None) or "default"
        companions = self.companions(request, code)
        client._load_k8s_config()  # as `run` does: in-cluster, else the kubeconfig
        api = DagsterKubernetesClient.production_client()
        if request.nodes > 1:
            require_indexed_jobs(request.model, request.nodes, server_version())
        launch = self.launch_args(request, code)
        # Owned by the run pod: the cluster deletes the training (and a multi-node Job and
        # Service) when the run pod goes, so a lost run worker leaves no pod holding GPUs.
        owners = run_pod_owner(api.core_api, namespace, context.log)
        for meta in (launch["base_pod_meta"], *(m["metadata"] for m in companions)):
            if owners:
                meta["ownerReferences"] = owners
        try:
            with _created(api, namespace, companions, context.log), \
                    _watching_workers(api, namespace, request, self.poll_interval_s, context.log):
                invocation = client.run(
                    context=context,
                    extras=request.to_extras(),
                    namespace=namespace,
                    env=env,
                    pod_wait_timeout=self.pod_wait_timeout_s,
                    **launch,
                )
        except (DagsterK8sError, ApiException) as exc:
            if str(exc).startswith("Timed out"):  # pod_wait_timeout_s: a retry would wait again
                raise
            refused = re.search(f"{re.escape(REFUSED)}[^\"\\n]*", str(exc))
            if refused:  # the image does not fit the code: a retry would refuse again
                raise CodeSyncRefused(f"the training pod of {request.model}: "
                                      f"{refused.group(0)}") from exc
            # The pod failed, or went (deleted, evicted, preempted: the training checkpoints on
            # SIGTERM): like a failed training process, the step's retry policy applies, and
            # the retry resumes from the newest checkpoint in the same MLflow run.
            raise DagsterPipesExecutionError(
                f"the training pod of {request.model} stopped before it finished: "
                f"{first_line(exc)}") from exc
        return self.reported(invocation)


INDEXED_JOBS = (1, 24)  # completionMode: Indexed is on by default (GA in 1.24)


def server_version() -> tuple[int, int]:
    """The API server's (major, minor) version (`1.27`, or `1.27+` on some providers)."""
    from kubernetes import client

    info = client.VersionApi().get_code()
    return int(info.major), int(re.sub(r"\D.*$", "", info.minor))


def require_indexed_jobs(model: str, nodes: int, version: tuple[int, int]) -> None:
    """Multi-node training runs its other nodes as an Indexed Job: refuse, naming the model and
    the versions, on a cluster that cannot run one (it would start a Job that never indexes)."""
    if version < INDEXED_JOBS:
        raise ValueError(
            f"model {model} asks for compute.nodes={nodes}: multi-node training needs Indexed "
            f"Jobs, Kubernetes >= {INDEXED_JOBS[0]}.{INDEXED_JOBS[1]}, but this cluster is "
            f"{version[0]}.{version[1]}; set compute.nodes: 1 or use a newer cluster")


RUN_POD_NAME_ENV = "HOSTNAME"  # a pod's hostname is its name (the run launcher sets no other)


def run_pod_owner(core_api: Any, namespace: str, log: Any) -> list[dict[str, Any]]:
    """`ownerReferences` naming the pod this step runs in (the run worker), when it runs in a
    pod of `namespace`; empty elsewhere (a laptop, a test, another namespace: owners must share
    the namespace). Not blocking: deleting the run pod never waits for the training pod."""
    name = os.environ.get(RUN_POD_NAME_ENV, "")
    if not (os.environ.get("KUBERNETES_SERVICE_HOST") and name):
        return []
    try:
        pod = core_api.read_namespaced_pod(name, namespace)
    except Exception as exc:  # no such pod here, or no right to read it: run without an owner
        log.warning(f"the training pod has no owner (could not read run pod {namespace}/{name}: "
                    f"{first_line(exc)}); it still stops at its activeDeadlineSeconds")
        return []
    return [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod.metadata.uid,
             "controller": False, "blockOwnerDeletion": False}]


class CodeSyncRefused(RuntimeError):
    """The training pod refused the code it was sent (`compute.code_sync`): not retried."""


class TrainingPodPending(RuntimeError):
    """The training pod did not start within its model's `compute.max_pending`."""


def pending_reason(pod: Any) -> str | None:
    """Why `pod` (a V1Pod) has not started yet: the scheduler's message while it is not placed
    (`0/3 nodes are available: 3 Insufficient nvidia.com/gpu.`), else its container's waiting
    reason (`ErrImagePull`, `ImagePullBackOff`, ...). None once a container runs or ran."""
    status = pod.status
    if status is None:
        return "Pending (no status yet)"
    if status.phase in ("Running", "Succeeded", "Failed"):
        return None
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"not scheduled: {condition.message or condition.reason}"
    for container in (status.init_container_statuses or []) + (status.container_statuses or []):
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason and waiting.reason != "ContainerCreating":
            detail = f": {' '.join(waiting.message.split())}" if waiting.message else ""
            return f"container {container.name} waiting, {waiting.reason}{detail}"
    return "Pending (scheduled, starting)"


def wait_until_started(core_api: Any, namespace: str, name: str, *, max_pending_s: float,
                       interval: float, log: Any, model: str) -> None:
    """Return once pod `name` has left Pending; raise `TrainingPodPending` naming the reason when
    it is still Pending after `max_pending_s` (logging each new reason as it waits)."""
    from kubernetes.client import ApiException

    deadline, said = time.monotonic() + max_pending_s, None
    while True:
        try:
            pod = core_api.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise TrainingPodPending(f"training pod {name} of model {model} was deleted "
                                         "before it started") from exc
            raise
        reason = pending_reason(pod)
        if reason is None:
            return
        if reason != said:
            log.info(f"training pod {name}: {reason}")
            said = reason
        if time.monotonic() >= deadline:
            message = (f"training pod {name} of model {model} still Pending after "
                       f"{max_pending_s:g}s (compute.max_pending): {reason}")
            log.error(message)
            raise TrainingPodPending(message)
        time.sleep(min(interval, max(deadline - time.monotonic(), 0.05)))


@functools.cache
def _start_limited_client_class() -> type:
    """`PipesK8sClient` whose wait for the pod to start is bounded by `max_pending_s` (its own
    wait for a pod without container statuses lasts up to a day): the pod must leave Pending
    before the logs are followed. Built on first use: dagster_k8s loads the Kubernetes client."""
    from dagster_k8s import PipesK8sClient

    class StartLimitedPipesClient(PipesK8sClient):
        def __init__(self, *, max_pending_s: float, model: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.max_pending_s, self.model = max_pending_s, model

        @contextlib.contextmanager
        def consume_pod_logs(self, context: Any, client: Any, namespace: str, pod_name: str,
                             enable_multi_container_logs: bool = False,
                             ignore_containers: set[Any] | None = None) -> Any:
            wait_until_started(client.core_api, namespace, pod_name,
                               max_pending_s=self.max_pending_s, interval=self.poll_interval,
                               log=context.log, model=self.model)
            with super().consume_pod_logs(context, client, namespace, pod_name,
                                          enable_multi_container_logs, ignore_containers):
                yield

    return StartLimitedPipesClient


@contextlib.contextmanager
def _created(api: Any, namespace: str, manifests: list[dict[str, Any]], log: Any) -> Any:
    """Create `manifests` (Services and Jobs) for the block, and delete them after it, however
    the step ends: a failed or retried step leaves no worker pods holding GPUs. (If the run
    worker itself is killed, the workers stop at the rendezvous timeout or when node 0's
    connection drops, and `activeDeadlineSeconds` bounds the Job.)"""
    created: list[dict[str, Any]] = []
    try:
        for manifest in manifests:
            if manifest["kind"] == "Service":
                api.core_api.create_namespaced_service(namespace, manifest)
            else:
                api.batch_api.create_namespaced_job(namespace, manifest)
            created.append(manifest)
        yield
    finally:
        for manifest in reversed(created):
            name = manifest["metadata"]["name"]
            try:
                if manifest["kind"] == "Service":
                    api.core_api.delete_namespaced_service(name, namespace)
                else:  # Background: the Job's pods go with it
                    api.batch_api.delete_namespaced_job(name, namespace,
                                                        propagation_policy="Background")
            except Exception as exc:  # cleanup tries every object
                kind = manifest["kind"]
                log.warning(f"could not delete {kind} {name}: {exc}; delete it with "
                            f"`kubectl -n {namespace} delete {kind.lower()} {name}`")


@contextlib.contextmanager
def _watching_workers(api: Any, namespace: str, request: TrainingRequest, interval: float,
                      log: Any) -> Any:
    """While the block runs, poll the worker Job; when it fails (a worker died, or gave up
    waiting for node 0), delete node 0's pod so the step fails now instead of waiting for a
    rendezvous or collective timeout. Nothing to watch for one node."""
    if request.nodes == 1:
        yield
        return
    stop, name = threading.Event(), rendezvous_name(request)

    def watch() -> None:
        while not stop.wait(interval):
            try:
                job = api.batch_api.read_namespaced_job_status(f"{name}-workers", namespace)
                if not (job.status.failed or 0):
                    continue
                log.error(f"a worker of {name} failed: stopping node 0's pod")
                pods = api.core_api.list_namespaced_pod(
                    namespace, label_selector=f"ml-platform/training={name},ml-platform/node=0")
                for pod in pods.items:
                    api.core_api.delete_namespaced_pod(pod.metadata.name, namespace)
                return
            except Exception as exc:  # an API hiccup: look again next time
                log.warning(f"could not check the worker Job of {name}: {exc}")

    watcher = threading.Thread(target=watch, name=f"watch-{name}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def pod_request(request: TrainingRequest, attempt: str) -> TrainingRequest:
    """The request as the pods see it: checkpoints go to the pod's scratch volume (they also
    reach MLflow as artifacts), not to a path of the orchestrator's filesystem; several nodes
    meet at a Service named after the MLflow run and this `attempt` of the step."""
    rendezvous = ""
    if request.nodes > 1:
        # <= 39 characters: the Job adds "-workers" and Kubernetes "-<index>" to its pods'
        # hostnames, which must stay DNS labels (63).
        label = re.sub(r"[^a-z0-9]+", "-", f"{request.mlflow_run_id[:20]}-{attempt}".lower())
        rendezvous = f"train-{label.strip('-')}:{RENDEZVOUS_PORT}"
    return dataclasses.replace(
        request, checkpoint_dir=f"{SCRATCH}/checkpoints/{request.model}/{request.mlflow_run_id}",
        rendezvous=rendezvous)


def rendezvous_name(request: TrainingRequest) -> str:
    """The multi-node training's Service (a DNS label; its Job adds "-workers")."""
    return request.rendezvous.rpartition(":")[0]


def _command(request: TrainingRequest, node_rank: int | None) -> list[str]:
    """The entrypoint, or `torchrun` over the pod's GPUs and the other nodes (the request knows
    how to start itself, as in the local backend), started by `code_sync`, which checks the
    image and puts the code package in place first. `node_rank` None: a worker of the Job."""
    command = ["python", "-m", CODE_SYNC, "--", *request.command("python", node_rank=node_rank)]
    return command if node_rank is not None else ["sh", "-c", WORKER_SHELL, "node", *command]


def _merge_tolerations(*groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for toleration in (t for group in groups for t in group):
        if dict(toleration) not in seen:
            seen.append(dict(toleration))
    return seen


def training_pod_meta(compute: ComputeSpec, request: TrainingRequest,
                      node_rank: int | None = 0,
                      trainer: K8sPodTrainer | None = None) -> dict[str, Any]:
    """Labels and annotations of a training pod: which model, which MLflow run, which node
    (None: a worker of the Job, whose index says), how long it may stay Pending."""
    labels = {
        "app.kubernetes.io/name": "ml-platform",
        "app.kubernetes.io/component": "training",
        "ml-platform/model": request.model,
        "ml-platform/gpu": str(compute.gpu),
    }
    if request.nodes > 1:
        labels["ml-platform/training"] = rendezvous_name(request)
        labels["ml-platform/node"] = "0" if node_rank == 0 else "worker"
    # How long the step lets the pod wait to start (compute.max_pending), for `kubectl describe`.
    annotations = {"ml-platform/mlflow-run-id": request.mlflow_run_id,
                   "ml-platform/max-pending": f"{compute.max_pending:g}s"}
    # The cluster's and the spec's own (a queue name, say): the platform's keys stay its own.
    extra_labels = {**(trainer.pod_labels if trainer else {}), **compute.labels}
    extra_annotations = {**(trainer.pod_annotations if trainer else {}), **compute.annotations}
    return {"labels": {**extra_labels, **labels},
            "annotations": {**extra_annotations, **annotations}}


def training_pod_spec(compute: ComputeSpec, request: TrainingRequest, trainer: K8sPodTrainer,
                      code: Shipment, node_rank: int | None = 0) -> dict[str, Any]:
    """The pod spec of one training node (camelCase, as in a manifest): pure, no cluster needed.

    GPUs are limits only (Kubernetes sets the request equal); cpu and memory are requested and
    limited as the spec says. Credentials reach the pod only from existing Secrets by name.
    `node_rank` None: a pod of the multi-node worker Job.
    """
    from kubernetes.utils import parse_quantity

    # /dev/shm is memory-backed and counts against the memory limit: a bigger one only moves
    # the OOM kill from the allocator to the data loader.
    if parse_quantity(trainer.shm_size) > parse_quantity(compute.memory):
        raise ValueError(f"training shm_size {trainer.shm_size} (chart value training.shmSize) must "
                         f"not exceed model {request.model}'s compute.memory {compute.memory}")
    limits: dict[str, str] = {"cpu": compute.cpu, "memory": compute.memory}
    if compute.gpu > 0:
        limits[GPU_RESOURCE] = str(compute.gpu)
    env_from = [{"secretRef": {"name": s}} for s in trainer.env_secrets]
    env_from += [{"configMapRef": {"name": c}} for c in trainer.env_config_maps]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": trainer.image or compute.image,
        "imagePullPolicy": trainer.image_pull_policy,
        "command": _command(request, node_rank),
        "resources": {"requests": {"cpu": compute.cpu, "memory": compute.memory}, "limits": limits},
        "env": [
            {"name": "HOME", "value": SCRATCH},
            {"name": "ML_PLATFORM_HOME", "value": f"{SCRATCH}/ml-platform"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            *({"name": k, "value": v} for k, v in sorted(code.env.items())),
        ],
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH},
                         {"name": "dshm", "mountPath": "/dev/shm"}, *trainer.extra_volume_mounts],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if env_from:
        container["envFrom"] = env_from
    if request.nodes > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT,
                               "protocol": "TCP"}]
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
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": trainer.shm_size}},
                    *trainer.extra_volumes],
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
    if compute.scheduler_name or trainer.scheduler_name:
        spec["schedulerName"] = compute.scheduler_name or trainer.scheduler_name
    if trainer.runtime_class_name:
        spec["runtimeClassName"] = trainer.runtime_class_name
    if trainer.affinity:
        spec["affinity"] = trainer.affinity
    if trainer.pod_wait_timeout_s > 0:  # 0: no limit, as for PipesK8sClient's wait
        # The kubelet stops the pod at this age, even if nothing is left to delete it.
        spec["activeDeadlineSeconds"] = int(trainer.pod_wait_timeout_s)
    return spec


def rendezvous_service(request: TrainingRequest) -> dict[str, Any]:
    """A headless Service whose name resolves to node 0's pod: the static rendezvous address.

    Published before the pod is ready (it has no readiness probe to pass): the other nodes
    only need its IP."""
    name = rendezvous_name(request)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "ml-platform",
                                              "ml-platform/training": name}},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"ml-platform/training": name, "ml-platform/node": "0"},
            # protocol named: server-side apply on Kubernetes < 1.21 requires it in port lists
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT,
                       "targetPort": RENDEZVOUS_PORT, "protocol": "TCP"}],
        },
    }


def worker_job(compute: ComputeSpec, request: TrainingRequest, trainer: K8sPodTrainer,
               code: Shipment) -> dict[str, Any]:
    """The Indexed Job of nodes 1..n-1: the same pod as node 0 but for its command.

    No retries of its own (`backoffLimit: 0`): a lost node fails the whole training, and
    Dagster's retry policy retries the step, which resumes from the last checkpoint."""
    workers = request.nodes - 1
    job: dict[str, Any] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{rendezvous_name(request)}-workers",
                     **training_pod_meta(compute, request, node_rank=None, trainer=trainer)},
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,  # if the step could not delete it
            "template": {"metadata": training_pod_meta(compute, request, node_rank=None,
                                                       trainer=trainer),
                         "spec": training_pod_spec(compute, request, trainer, code,
                                                   node_rank=None)},
        },
    }
    if trainer.pod_wait_timeout_s > 0:  # 0: no limit, as for PipesK8sClient's wait
        job["spec"]["activeDeadlineSeconds"] = int(trainer.pod_wait_timeout_s)
    return job


def placeholder_request(spec: ModelSpec) -> TrainingRequest:
    """The request `trained` would send for `spec`, with run-time values as placeholders."""
    return TrainingRequest.for_spec(spec, training_set_uri="<lake URI of the training set>",
                                    mlflow_run_id="<mlflow-run-id>", checkpoint_dir="")


def render_training_pod(spec: ModelSpec, trainer: K8sPodTrainer | None = None, *,
                        namespace: str | None = None, code: Shipment | None = None
                        ) -> dict[str, Any]:
    """The Pod manifest the `trained` step of `spec` submits, as a plain dict.

    Built by `dagster_k8s.pipes.build_pod_body`, the function `PipesK8sClient.run` uses, from
    the same `launch_args`; the run id in the name, the Pipes variables and the code
    package's URI are placeholders.
    """
    import kubernetes
    from dagster_k8s.pipes import build_pod_body, get_pod_name
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR

    trainer = trainer or K8sPodTrainer.from_env([spec])
    request = pod_request(placeholder_request(spec), attempt=PLACEHOLDER_ATTEMPT)
    code = code or code_package.ship(None, sync=trainer.code_sync)
    op_name = dg.AssetKey(names.model_asset_path(spec.name, "trained")).to_python_identifier()
    pod_name = re.sub(r"\d{10}$", "0" * 10, get_pod_name("0" * 18, op_name))
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "<MLFLOW_TRACKING_URI of the run>")
    body = build_pod_body(
        pod_name=pod_name, image=None, command=None,
        env_vars={DAGSTER_PIPES_CONTEXT_ENV_VAR: PIPES_PLACEHOLDER,
                  DAGSTER_PIPES_MESSAGES_ENV_VAR: PIPES_PLACEHOLDER, **training_env(tracking)},
        **trainer.launch_args(request, code),
    )
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(body)
    manifest = {"apiVersion": "v1", "kind": "Pod", **manifest}
    if namespace or trainer.namespace:
        manifest["metadata"]["namespace"] = namespace or trainer.namespace
    return manifest


def render_training(spec: ModelSpec, trainer: K8sPodTrainer | None = None, *,
                    namespace: str | None = None) -> list[dict[str, Any]]:
    """Every manifest the `trained` step of `spec` submits: node 0's pod and, for several
    nodes, the rendezvous Service and the worker Job before it."""
    trainer = trainer or K8sPodTrainer.from_env([spec])
    code = code_package.ship(None, sync=trainer.code_sync)
    companions = trainer.companions(pod_request(placeholder_request(spec), PLACEHOLDER_ATTEMPT),
                                    code)
    namespace = namespace or trainer.namespace
    for manifest in companions:
        if namespace:
            manifest["metadata"]["namespace"] = namespace
    return [*companions, render_training_pod(spec, trainer, namespace=namespace, code=code)]
