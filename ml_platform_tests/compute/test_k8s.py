"""The Kubernetes compute backend (`ml_platform.compute.k8s`) and `ml-platform k8s render`:
the training pod is built from the model's ComputeSpec (GPU limits only when asked, cpu/memory
requests and limits, node selector, tolerations, image, service account, credentials from
Secrets by name) and validates against the Kubernetes schemas offline; several nodes add a
rendezvous Service and an Indexed Job of the other nodes; `K8sPodTrainer.train` submits exactly
what `render` prints and deletes the Service and Job whatever happens; `resources_for`
picks the k8s resources by profile; a pod still Pending after the model's `compute.max_pending`
fails the step naming the scheduler's or the kubelet's reason.

Faked: the Kubernetes API server in some tests (it records what `train` creates and deletes and
refuses the pod, so no pod runs; or it keeps the pod Pending with a given status). Everything
else is the real code, with no cluster.
`ml_platform_tests/compute/test_multi_node.py` runs the rendered nodes' commands."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pytest
import yaml

from ml_platform.cli import main
from ml_platform.compute import code_package
from ml_platform.compute.k8s import (
    GPU_RESOURCE,
    PIPES_PLACEHOLDER,
    POD_ENV,
    RENDEZVOUS_PORT,
    K8sPodTrainer,
    placeholder_request,
    render_training,
    render_training_pod,
    training_pod_spec,
)
from ml_platform.compute.trainer import training_env
from ml_platform.specs import ComputeSpec, ModelSpec, load_specs
from ml_platform_tests.kube import validate
from ml_platform_tests.services import env


def _spec(**compute: Any) -> ModelSpec:
    spec = next(s for s in load_specs() if s.name == "listing_price")
    return spec.model_copy(update={"compute": spec.compute.model_copy(update=compute)}) if compute else spec


def _trainer(spec: ModelSpec, **settings: Any) -> K8sPodTrainer:
    compute = {spec.name: spec.compute.model_dump(mode="json", exclude_none=True)}
    return K8sPodTrainer(compute=compute, **settings)


class _Store:
    """An object store in memory, shaped like the S3 lake (`code_package.CodeStore`)."""

    is_shared = True

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def exists(self, key: str) -> bool:
        return key in self.objects

    def write_bytes(self, key: str, data: bytes) -> str:
        self.objects[key] = data
        return self.uri(key)

    def uri(self, key: str) -> str:
        return f"s3://b/lake/{key}"


ENTRYPOINT_COMMAND = ["python", "-m", "ml_platform.compute.code_sync", "--",
                      "python", "-m", "ml_platform.compute.entrypoint"]


def test_cli_render_validates_and_carries_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec()
    with env(**{POD_ENV: None}):
        assert main(["k8s", "render", "listing_price", "--namespace", "ml"]) == 0
    out = capsys.readouterr().out
    assert f"# Code: package {code_package.build().code_hash} of this checkout" in out
    pod = yaml.safe_load(out)
    validate(pod)
    assert pod["kind"] == "Pod" and pod["metadata"]["namespace"] == "ml"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ENTRYPOINT_COMMAND
    # Code sync: the package's content hash, the runtime lock's, the package's place (known
    # when the step runs)
    package = code_package.build()
    code_env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("ML_PLATFORM_")}
    assert code_env == {"ML_PLATFORM_HOME": "/tmp/ml-platform",
                        "ML_PLATFORM_CODE_HASH": package.code_hash,
                        "ML_PLATFORM_RUNTIME_LOCK": code_package.lock_hash(),
                        "ML_PLATFORM_CODE_PACKAGE": f"<lake URI of code/{package.code_hash}.tar.gz>"}
    assert container["resources"] == {
        "requests": {"cpu": spec.compute.cpu, "memory": spec.compute.memory},
        "limits": {"cpu": spec.compute.cpu, "memory": spec.compute.memory,
                   GPU_RESOURCE: str(spec.compute.gpu)},
    }
    assert spec.compute.gpu == 1
    assert pod["spec"].get("nodeSelector", {}) == spec.compute.node_selector == {}  # no provider default
    assert pod["spec"]["tolerations"] == [dict(t) for t in spec.compute.tolerations]
    assert container["image"] == spec.compute.image
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["metadata"]["labels"]["ml-platform/model"] == "listing_price"


def test_cpu_only_spec_requests_no_gpu() -> None:
    spec = _spec(gpu=0, node_selector={}, tolerations=())
    pod = render_training_pod(spec, _trainer(spec))
    validate(pod)
    assert GPU_RESOURCE not in json.dumps(pod)
    assert "nodeSelector" not in pod["spec"] and "tolerations" not in pod["spec"]


def test_cluster_settings_merge_with_the_spec() -> None:
    spec = _spec(gpu=2, node_selector={"gpu": "a100", "zone": "spec"})
    trainer = _trainer(
        spec, image="registry.example/ml-platform:1.2.3", namespace="ml", service_account_name="train",
        env_secrets=["s3-creds", "mlflow-client"], env_config_maps=["platform-env"],
        node_selector={"zone": "cluster", "pool": "gpu"}, priority_class_name="training",
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                     {"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        image_pull_secrets=["regcred"], shm_size="4Gi",
    )
    pod = render_training_pod(spec, trainer)
    validate(pod)
    podspec = pod["spec"]
    assert podspec["nodeSelector"] == {"zone": "spec", "pool": "gpu", "gpu": "a100"}
    assert [t["key"] for t in podspec["tolerations"]] == ["nvidia.com/gpu", "pool"]
    assert podspec["serviceAccountName"] == "train"
    assert podspec["automountServiceAccountToken"] is False
    assert podspec["imagePullSecrets"] == [{"name": "regcred"}]
    assert podspec["priorityClassName"] == "training"
    assert pod["metadata"]["namespace"] == "ml"
    (container,) = podspec["containers"]
    assert container["image"] == "registry.example/ml-platform:1.2.3"
    assert container["resources"]["limits"][GPU_RESOURCE] == "2"
    assert GPU_RESOURCE not in container["resources"]["requests"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}},
                                    {"secretRef": {"name": "mlflow-client"}},
                                    {"configMapRef": {"name": "platform-env"}}]
    # No credential travels as a plain value.
    assert all(not any(w in e["name"] for w in ("PASSWORD", "SECRET", "KEY")) for e in container["env"])
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in podspec["volumes"]


def test_settings_from_the_environment() -> None:
    spec = _spec()
    with env(**{POD_ENV: json.dumps({"namespace": "ml", "node_selector": {"pool": "gpu"}})}):
        trainer = K8sPodTrainer.from_env([spec])
    assert trainer.namespace == "ml" and trainer.compute_for(spec.name) == spec.compute
    with env(**{POD_ENV: "[1, 2]"}), pytest.raises(ValueError, match="must be a JSON object"):
        K8sPodTrainer.from_env([spec])
    with pytest.raises(ValueError, match="no ComputeSpec for model 'other'"):
        trainer.compute_for("other")


def test_pod_spec_is_pure() -> None:
    spec = _spec()
    request, trainer = placeholder_request(spec), _trainer(spec)
    code = code_package.ship(None)
    assert training_pod_spec(spec.compute, request, trainer, code) == training_pod_spec(
        ComputeSpec.model_validate(spec.compute.model_dump()), request, trainer, code)


class _Refused(Exception):
    pass


def _fake_cluster(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    """A Kubernetes API (version 1.33) that records (call, namespace, body or name) and refuses
    every pod."""
    from dagster_k8s import PipesK8sClient
    from dagster_k8s.pipes import DagsterKubernetesClient

    calls: list[tuple[str, str, Any]] = []

    def record(call: str, refuse: bool = False) -> Any:
        def method(first: Any, second: Any, **_kw: Any) -> None:
            # create_*(namespace, body); delete_*(name, namespace)
            calls.append((call, first, second) if call.startswith("create") else (call, second, first))
            if refuse:
                raise _Refused("no cluster here")
        return method

    api = SimpleNamespace(
        core_api=SimpleNamespace(
            create_namespaced_pod=record("create_pod", refuse=True),
            create_namespaced_service=record("create_service"),
            delete_namespaced_service=record("delete_service")),
        batch_api=SimpleNamespace(
            create_namespaced_job=record("create_job"),
            delete_namespaced_job=record("delete_job")),
    )
    monkeypatch.setattr(PipesK8sClient, "_load_k8s_config", lambda self: None)
    monkeypatch.setattr(DagsterKubernetesClient, "production_client",
                        staticmethod(lambda *a, **kw: api))
    monkeypatch.setattr("ml_platform.compute.k8s.server_version", lambda: (1, 33))
    return calls


def _train(trainer: K8sPodTrainer, request: Any,
           store: _Store | None = None) -> dg.ExecuteInProcessResult:
    store = store or _Store()

    @dg.asset(key=["listing_price", "trained"])
    def trained(context, trainer: K8sPodTrainer) -> None:  # type: ignore[no-untyped-def]
        trainer.train(context, request, env=training_env("http://mlflow:5000"), code_store=store)

    result = dg.materialize([trained], resources={"trainer": trainer}, raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "no cluster here" in str(failure.step_failure_data.error)  # refused, not broken
    return result


def test_train_submits_the_rendered_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, decode_env_var

    calls = _fake_cluster(monkeypatch)
    spec = _spec()
    trainer = _trainer(spec, namespace="ml", env_secrets=["s3-creds"])
    request = dataclasses.replace(placeholder_request(spec), mlflow_run_id="0123abcd",
                                  training_set_uri="s3://b/lake/x.parquet", checkpoint_dir="/elsewhere")

    assert not _train(trainer, request).success
    ((call, namespace, body),) = calls  # one node: no Service, no Job
    assert (call, namespace) == ("create_pod", "ml")
    from kubernetes.client import ApiClient

    submitted = ApiClient().sanitize_for_serialization(body)
    rendered = render_training_pod(spec, trainer)
    env_of = lambda pod: {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}  # noqa: E731
    submitted_env, rendered_env = env_of(submitted), env_of(rendered)
    assert rendered_env[DAGSTER_PIPES_CONTEXT_ENV_VAR] == PIPES_PLACEHOLDER
    (context,) = decode_env_var(submitted_env[DAGSTER_PIPES_CONTEXT_ENV_VAR]).values()  # {"data": ...}
    extras = context["extras"]
    assert extras["training_set_uri"] == "s3://b/lake/x.parquet"
    assert extras["checkpoint_dir"] == "/tmp/checkpoints/listing_price/0123abcd"
    assert submitted_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    # dagster-<run id[:18]>-<op name[:20]>-<10 digits>: same op part, another run id
    op_part = lambda pod: pod["metadata"]["name"][27:-11]  # noqa: E731
    assert op_part(submitted) == op_part(rendered) == "listing-price--train"
    # The code package, in the lake under its content hash, is where the pod is told to look.
    code = code_package.build()
    assert submitted_env["ML_PLATFORM_CODE_PACKAGE"] == f"s3://b/lake/code/{code.code_hash}.tar.gz"
    assert submitted_env["ML_PLATFORM_CODE_HASH"] == rendered_env["ML_PLATFORM_CODE_HASH"] == code.code_hash
    assert submitted["metadata"]["annotations"] == {"ml-platform/mlflow-run-id": "0123abcd",
                                                    "ml-platform/max-pending": "600s"}

    def normalized(pod: dict[str, Any]) -> dict[str, Any]:
        pod = json.loads(json.dumps(pod))
        pod.pop("apiVersion", None), pod.pop("kind", None)
        pod["metadata"].pop("namespace", None)
        pod["metadata"].pop("name"), pod["metadata"].pop("annotations")
        pod["spec"]["containers"][0]["env"] = sorted(e["name"] for e in pod["spec"]["containers"][0]["env"])
        return pod

    assert normalized(submitted) == normalized(rendered)


def test_profile_picks_the_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_platform.compute.local import LocalProcessTrainer
    from ml_platform.pipeline.resources import resources_for
    from ml_platform.storage.lake import Lake
    from ml_platform.storage.s3 import S3Lake, S3LandingZone

    specs = load_specs()
    monkeypatch.delenv("ML_PLATFORM_PROFILE", raising=False)
    local = resources_for(None, specs)
    assert isinstance(local["trainer"], LocalProcessTrainer) and isinstance(local["lake"], Lake)
    monkeypatch.setenv("ML_PLATFORM_PROFILE", "k8s")
    monkeypatch.setenv("ML_PLATFORM_LAKE_PREFIX", "lake-x")
    monkeypatch.setenv("ML_PLATFORM_DAGSTER_URL", "https://dagster.example")
    remote = resources_for(None, specs)
    assert isinstance(remote["trainer"], K8sPodTrainer)
    assert sorted(remote["trainer"].compute) == sorted(s.name for s in specs)
    assert isinstance(remote["lake"], S3Lake) and remote["lake"].prefix == "lake-x"
    assert isinstance(remote["landing"], S3LandingZone) and remote["landing"].prefix == "landing"
    assert remote["mlflow"].dagster_url == "https://dagster.example"


def _multi_node(nodes: int = 3, gpu: int = 4) -> tuple[ModelSpec, K8sPodTrainer]:
    spec = _spec(nodes=nodes, gpu=gpu)
    return spec, _trainer(spec, namespace="ml", env_secrets=["s3-creds"])


def test_multi_node_renders_a_service_a_worker_job_and_node_0(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    spec, trainer = _multi_node()
    service, job, pod = render_training(spec, trainer)
    for manifest in (service, job, pod):
        validate(manifest)
        assert manifest["metadata"]["namespace"] == "ml"
    assert (service["kind"], job["kind"], pod["kind"]) == ("Service", "Job", "Pod")

    # The headless Service selects node 0's pod alone, and is where every node meets.
    name = service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0]["port"] == RENDEZVOUS_PORT
    selector = service["spec"]["selector"].items()
    worker_meta = job["spec"]["template"]["metadata"]
    assert selector <= pod["metadata"]["labels"].items()
    assert not selector <= worker_meta["labels"].items()

    # The Job: nodes 1..n-1 at once, no retries of its own, the same pod but for the command.
    assert job["metadata"]["name"] == f"{name}-workers"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == spec.compute.nodes - 1
    assert job["spec"]["backoffLimit"] == 0
    worker = job["spec"]["template"]["spec"]
    (node0,), (workerc,) = pod["spec"]["containers"], worker["containers"]
    for container in (node0, workerc):
        assert container["resources"]["limits"][GPU_RESOURCE] == "4"
        assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
        assert container["ports"] == [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT,
                                      "protocol": "TCP"}]
    assert worker["tolerations"] == pod["spec"]["tolerations"]
    assert worker.get("nodeSelector") == pod["spec"].get("nodeSelector")
    torchrun = ["python", "-m", "torch.distributed.run", "--nproc-per-node=4", "--nnodes=3"]
    rendezvous = [f"--master-addr={name}", f"--master-port={RENDEZVOUS_PORT}",
                  "--rdzv-conf=timeout=1800", "-m", "ml_platform.compute.entrypoint"]
    code_sync = ENTRYPOINT_COMMAND[:4]
    assert node0["command"] == [*code_sync, *torchrun, "--node-rank=0", *rendezvous]
    assert workerc["command"][:2] == ["sh", "-c"] and "JOB_COMPLETION_INDEX + 1" in workerc["command"][2]
    assert workerc["command"][4:] == [*code_sync, *torchrun, *rendezvous]
    # Only node 0 talks to Dagster: the workers get no Pipes channel and no tracking URI; every
    # node fetches the same code package.
    assert {e["name"] for e in workerc["env"]} == {
        "HOME", "ML_PLATFORM_HOME", "PYTHONUNBUFFERED", "ML_PLATFORM_CODE_HASH",
        "ML_PLATFORM_RUNTIME_LOCK", "ML_PLATFORM_CODE_PACKAGE"}

    # The CLI prints the three, in the order `train` creates them.
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "listing_price.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    monkeypatch.setenv("ML_PLATFORM_SPEC_DIR", str(specs))
    monkeypatch.setenv(POD_ENV, json.dumps({"namespace": "ml"}))
    assert main(["k8s", "render", "listing_price"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["Service", "Job", "Pod"]
    for doc in docs:
        validate(doc)


def test_multi_node_train_deletes_its_service_and_job_whatever_happens(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_cluster(monkeypatch)
    spec, trainer = _multi_node(nodes=2)
    request = dataclasses.replace(placeholder_request(spec), mlflow_run_id="0123ABCD")

    assert not _train(trainer, request).success  # the pod is refused: the step fails
    assert [c[0] for c in calls] == ["create_service", "create_job", "create_pod",
                                     "delete_job", "delete_service"]
    service, job, pod = (c[2] for c in calls[:3])
    name = service["metadata"]["name"]
    # Named after the MLflow run and the attempt: a retry never meets the old attempt's pods.
    assert re.fullmatch(r"train-0123abcd-[0-9a-f]{8}-0", name)
    assert calls[3][2] == job["metadata"]["name"] == f"{name}-workers"
    assert calls[4][2] == name
    assert all(c[1] == "ml" for c in calls)
    from kubernetes.client import ApiClient

    submitted = ApiClient().sanitize_for_serialization(pod)
    assert f"--master-addr={name}" in submitted["spec"]["containers"][0]["command"]
    assert submitted["metadata"]["labels"]["ml-platform/training"] == name


def test_a_failed_worker_job_stops_node_0() -> None:
    """A dead worker (or one that gave up waiting for node 0) fails the Job; the step then
    deletes node 0's pod, so `PipesK8sClient` fails now rather than at a collective timeout."""
    import logging
    import time

    from ml_platform.compute.k8s import _watching_workers, pod_request, rendezvous_name

    spec, _ = _multi_node(nodes=2)
    request = pod_request(dataclasses.replace(placeholder_request(spec), mlflow_run_id="r1"),
                          attempt="abcdef12-0")
    name = rendezvous_name(request)
    polls: list[str] = []
    deleted: list[str] = []

    def read_namespaced_job_status(job: str, namespace: str) -> Any:
        polls.append(job)
        return SimpleNamespace(status=SimpleNamespace(failed=1 if len(polls) >= 3 else None))

    def list_namespaced_pod(namespace: str, label_selector: str) -> Any:
        assert label_selector == f"ml-platform/training={name},ml-platform/node=0"
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name="node-0-pod"))])

    api = SimpleNamespace(
        batch_api=SimpleNamespace(read_namespaced_job_status=read_namespaced_job_status),
        core_api=SimpleNamespace(list_namespaced_pod=list_namespaced_pod,
                                 delete_namespaced_pod=lambda pod, ns: deleted.append(f"{ns}/{pod}")))
    with _watching_workers(api, "ml", request, 0.01, logging.getLogger("test")):
        deadline = time.monotonic() + 10
        while not deleted and time.monotonic() < deadline:
            time.sleep(0.01)
    assert deleted == ["ml/node-0-pod"]
    assert polls == [f"{name}-workers"] * 3  # and it stopped watching
    assert len(name) <= 39 and re.fullmatch(r"[a-z0-9-]+", name)


def _pod_status(phase: str = "Pending", scheduled: str | None = None,
                waiting: tuple[str, str] | None = None) -> Any:
    """A V1Pod as the API returns it: not scheduled (the scheduler's message), or a container
    waiting (reason, message), or running."""
    from kubernetes.client import (
        V1ContainerState,
        V1ContainerStateWaiting,
        V1ContainerStatus,
        V1Pod,
        V1PodCondition,
        V1PodStatus,
    )

    conditions = [V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable",
                                 message=scheduled)] if scheduled else None
    statuses = [V1ContainerStatus(
        name="training", image="x", image_id="", ready=False, restart_count=0,
        state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting[0],
                                                               message=waiting[1])))
    ] if waiting else None
    return V1Pod(status=V1PodStatus(phase=phase, conditions=conditions,
                                    container_statuses=statuses))


@pytest.mark.parametrize(("pod", "reason"), [
    (_pod_status(scheduled="0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
     "not scheduled: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
    (_pod_status(scheduled="0/1 nodes are available: 1 node(s) didn't match node selector."),
     "not scheduled: 0/1 nodes are available: 1 node(s) didn't match node selector."),
    (_pod_status(waiting=("ImagePullBackOff", 'Back-off pulling image "nowhere/x:1"')),
     'container training waiting, ImagePullBackOff: Back-off pulling image "nowhere/x:1"'),
    (_pod_status(waiting=("ContainerCreating", None)), "Pending (scheduled, starting)"),
    (_pod_status(phase="Running"), None),
    (_pod_status(phase="Failed"), None),
])
def test_pending_reason_names_the_scheduler_or_the_kubelet(pod: Any, reason: str | None) -> None:
    from ml_platform.compute.k8s import pending_reason

    assert pending_reason(pod) == reason


def test_a_pod_pending_past_max_pending_fails_the_step_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake API server that creates the pod and keeps it unschedulable: the step fails after
    `compute.max_pending`, without retries, its error and its log naming the scheduler's
    message; the pod is deleted."""
    from dagster_k8s import PipesK8sClient
    from dagster_k8s.pipes import DagsterKubernetesClient

    message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    calls: list[tuple[str, str]] = []
    core = SimpleNamespace(
        create_namespaced_pod=lambda ns, body: calls.append(("create", body.metadata.name)),
        read_namespaced_pod=lambda name, ns: _pod_status(scheduled=message),
        delete_namespaced_pod=lambda name, ns, **kw: calls.append(("delete", name)))
    monkeypatch.setattr(PipesK8sClient, "_load_k8s_config", lambda self: None)
    monkeypatch.setattr(DagsterKubernetesClient, "production_client",
                        staticmethod(lambda *a, **kw: SimpleNamespace(core_api=core)))
    spec = _spec(gpu=8, max_pending=1)
    trainer = _trainer(spec, namespace="ml", poll_interval_s=0.2)
    request = placeholder_request(spec)

    @dg.asset(key=["listing_price", "trained"])
    def trained(context, trainer: K8sPodTrainer) -> None:  # type: ignore[no-untyped-def]
        trainer.train(context, request, env=training_env("http://mlflow:5000"), code_store=_Store())

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([trained], resources={"trainer": trainer}, instance=instance,
                            raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = str(failure.step_failure_data.error)
    assert "still Pending after 1s (compute.max_pending)" in error and message in error
    assert "listing_price" in error
    assert any(message in r.user_message for r in instance.all_logs(result.run_id))
    (created,), deleted = [n for c, n in calls if c == "create"], [n for c, n in calls if c == "delete"]
    assert deleted == [created]  # nothing left waiting for a GPU


def test_training_pod_is_owned_by_the_run_pod_and_has_a_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In a run pod (a fake API returns it), the training pod names it as owner, so the cluster
    deletes the training pod with it; outside a pod there is no owner. Every training pod
    carries `activeDeadlineSeconds` (the chart's training.podWaitTimeoutSeconds)."""
    from kubernetes.client import ApiException, V1ObjectMeta, V1Pod

    from ml_platform.compute.k8s import run_pod_owner

    log = SimpleNamespace(warning=lambda message: warnings.append(message))
    warnings: list[str] = []
    pods = {("ml", "dagster-run-1234-abcde"): V1Pod(metadata=V1ObjectMeta(uid="u-1"))}

    def read(name: str, ns: str) -> Any:
        if (ns, name) not in pods:
            raise ApiException(status=404, reason="Not Found")
        return pods[(ns, name)]

    api = SimpleNamespace(read_namespaced_pod=read)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert run_pod_owner(api, "ml", log) == []  # not in a pod
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("HOSTNAME", "dagster-run-1234-abcde")
    assert run_pod_owner(api, "ml", log) == [{
        "apiVersion": "v1", "kind": "Pod", "name": "dagster-run-1234-abcde", "uid": "u-1",
        "controller": False, "blockOwnerDeletion": False}]
    assert run_pod_owner(api, "elsewhere", log) == [] and "no owner" in warnings[0]

    spec = _spec()
    assert render_training_pod(spec, _trainer(spec, pod_wait_timeout_s=7200))["spec"][
        "activeDeadlineSeconds"] == 7200
    assert "activeDeadlineSeconds" not in render_training_pod(
        spec, _trainer(spec, pod_wait_timeout_s=0))["spec"]


def test_scheduler_hooks_from_the_chart_and_the_spec() -> None:
    """schedulerName, runtimeClassName, affinity, labels and annotations (a queueing system's,
    e.g. Kueue's queue name) reach the training pod; the spec wins over the chart on a key, the
    platform's own labels stay; nothing provider-specific is set by default."""
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "gpu-type", "operator": "In", "values": ["a100", "h100"]}]}]}}}
    spec = _spec(labels={"kueue.x-k8s.io/queue-name": "pricing", "ml-platform/model": "no"},
                 annotations={"team": "pricing"})
    trainer = _trainer(spec, scheduler_name="volcano", runtime_class_name="nvidia",
                       affinity=affinity, pod_labels={"kueue.x-k8s.io/queue-name": "shared",
                                                      "cost-center": "ml"},
                       pod_annotations={"team": "platform", "owner": "ml"})
    pod = render_training_pod(spec, trainer)
    validate(pod)
    assert pod["spec"]["schedulerName"] == "volcano"
    assert pod["spec"]["runtimeClassName"] == "nvidia" and pod["spec"]["affinity"] == affinity
    labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
    assert labels["kueue.x-k8s.io/queue-name"] == "pricing" and labels["cost-center"] == "ml"
    assert labels["ml-platform/model"] == "listing_price"
    assert annotations["team"] == "pricing" and annotations["owner"] == "ml"
    kai = _spec(scheduler_name="kai")
    assert render_training_pod(kai, _trainer(kai, scheduler_name="volcano"))["spec"][
        "schedulerName"] == "kai"
    plain = render_training_pod(_spec(), _trainer(_spec()))["spec"]
    assert not {"schedulerName", "runtimeClassName", "affinity"} & set(plain)


def test_multi_node_needs_indexed_jobs() -> None:
    """A spec asking for several nodes is refused, naming the model and both versions, on a
    cluster older than 1.24 (the local cluster is 1.20); accepted from 1.24."""
    from ml_platform.compute.k8s import require_indexed_jobs

    with pytest.raises(ValueError, match=r"model listing_price asks for compute.nodes=2: .*"
                                         r"Kubernetes >= 1.24, but this cluster is 1.20"):
        require_indexed_jobs("listing_price", 2, (1, 20))
    require_indexed_jobs("listing_price", 2, (1, 24))
    require_indexed_jobs("listing_price", 2, (2, 0))


def test_a_pod_refusing_its_code_fails_the_step_once_naming_both_hashes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`code_sync` in the pod refused (the image's runtime lock is another): the step fails at
    once with the pod's one line, instead of retrying a pod that would refuse again."""
    from dagster._core.errors import DagsterPipesExecutionError
    from dagster_k8s.client import DagsterK8sError

    from ml_platform.compute.k8s import _start_limited_client_class
    from ml_platform.pipeline.retries import MLFLOW_RETRY, fail_fast

    _fake_cluster(monkeypatch)
    refusal = ("code sync refused: this image was built from runtime lock aaa, the "
               "orchestrator's code needs bbb: rebuild the image")

    def run(self: Any, **kwargs: Any) -> None:  # as PipesK8sClient reports a failed container
        raise DagsterK8sError(f'Pod p terminated but some containers exited with errors:\n'
                              f'Container "training" failed with message: "{refusal}". '
                              f'Last 100 log lines: "{refusal}\n"')

    monkeypatch.setattr(_start_limited_client_class(), "run", run)
    spec = _spec()
    trainer, request = _trainer(spec, namespace="ml"), placeholder_request(spec)

    @dg.asset(key=["listing_price", "trained"], retry_policy=MLFLOW_RETRY)
    def trained(context, trainer: K8sPodTrainer) -> None:  # type: ignore[no-untyped-def]
        with fail_fast(retry_on=(DagsterPipesExecutionError,)):
            trainer.train(context, request, env=training_env("http://mlflow:5000"),
                          code_store=_Store())

    result = dg.materialize([trained], resources={"trainer": trainer}, raise_on_error=False)
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.error.message.strip().endswith(
        f"the training pod of listing_price: {refusal}")
