"""The Helm chart (helm/ml-platform), tested by rendering it with a real `helm` binary for the
default values and each shipped values file: `helm lint --strict` passes; every rendered object
validates against the Kubernetes schemas offline; only training pods may request GPUs; RBAC is
a namespaced Role; credentials are referenced by Secret name only; pods run non-root with
resource requests; the Dagster instance and workspace configs pass Dagster's own schemas; and
the chart's training settings produce a valid GPU-pool training pod. No cluster is involved."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ml_platform.compute.code_package import package_hash
from ml_platform.compute.k8s import GPU_RESOURCE, K8sPodTrainer, render_training_pod
from ml_platform.settings import instance_config
from ml_platform.specs import load_specs
from ml_platform_tests.kube import (
    CHART,
    NAMESPACE,
    VALUES,
    config_map,
    containers,
    helm_run,
    pod_specs,
    render,
    validate,
)
from ml_platform_tests.services import env

VARIANTS = sorted(VALUES)
SENSITIVE = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", re.I)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_and_every_object_validates(variant: str) -> None:
    flags = [a for f in VALUES[variant] for a in ("-f", f)]
    helm_run("lint", "--strict", CHART, *flags)
    objects = render(variant)
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "ConfigMap", "ServiceAccount",
                                           "Role", "RoleBinding"}
    for obj in objects:
        validate(obj)


@pytest.mark.parametrize("variant", VARIANTS)
def test_platform_pods_never_request_gpus(variant: str) -> None:
    objects = render(variant)
    workloads = dict(pod_specs(objects))
    assert {w.split("/")[1] for w in workloads} >= {
        "mlp-ml-platform-webserver", "mlp-ml-platform-daemon", "mlp-ml-platform-user-code",
        "mlp-ml-platform-mlflow"}
    assert GPU_RESOURCE not in json.dumps(workloads)
    # nor the run worker Job the run launcher creates from dagster.yaml
    instance = yaml.safe_load(config_map(objects, "-instance")["dagster.yaml"])
    assert GPU_RESOURCE not in json.dumps(instance)


def test_bundled_postgres_is_optional() -> None:
    kinds = lambda v: {(o["kind"], o["metadata"]["name"]) for o in render(v)}  # noqa: E731
    assert ("StatefulSet", "mlp-ml-platform-postgresql") in kinds("default")
    assert not any(k == "StatefulSet" for k, _ in kinds("external-postgres"))
    env = config_map(render("external-postgres"), "-env")
    assert env["DAGSTER_PG_HOST"] == "ml-platform-db.example.internal"
    instance = yaml.safe_load(config_map(render("external-postgres"), "-instance")["dagster.yaml"])
    assert instance["storage"]["postgres"]["postgres_db"]["params"] == {"sslmode": "require"}
    (mlflow,) = [o for o in render("external-postgres") if o["metadata"]["name"] == "mlp-ml-platform-mlflow"
                 and o["kind"] == "Deployment"]
    (container,) = mlflow["spec"]["template"]["spec"]["containers"]
    backend = {e["name"]: e.get("value") for e in container["env"]}["MLFLOW_BACKEND_STORE_URI"]
    assert backend == ("postgresql+psycopg2://$(MLFLOW_DB_USER):$(MLFLOW_DB_PASSWORD)"
                       "@ml-platform-db.example.internal:5432/mlflow?sslmode=require")
    assert "--serve-artifacts" in container["command"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_rbac_is_namespaced_and_minimal(variant: str) -> None:
    objects = render(variant)
    kinds = [o["kind"] for o in objects]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    (role,) = [o for o in objects if o["kind"] == "Role"]
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {("batch", "jobs"), ("batch", "jobs/status"), ("", "pods"), ("", "pods/log"),
                       ("", "pods/status"), ("", "services"), ("", "events")}
    assert all("*" not in rule["verbs"] for rule in role["rules"])
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlp-ml-platform",
                                    "namespace": NAMESPACE}]
    # Only the pods that launch runs (webserver, daemon) get a token; the user-code server,
    # MLflow and PostgreSQL never talk to the API.
    for where, spec in pod_specs(objects):
        if not any(n in where for n in ("webserver", "daemon")):
            assert spec.get("automountServiceAccountToken") is False, where
            assert spec["serviceAccountName"] == "mlp-ml-platform-workload", where


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_secret_in_plain_text(variant: str) -> None:
    objects = render(variant)
    assert not [o for o in objects if o["kind"] == "Secret"]
    for where, spec in pod_specs(objects):
        for c in containers(spec):
            for var in c.get("env", []):
                if SENSITIVE.search(var["name"]):
                    assert "value" not in var and "secretKeyRef" in var["valueFrom"], (where, var)
    for data in (o["data"] for o in objects if o["kind"] == "ConfigMap"):
        assert not [k for k in data if SENSITIVE.search(k)]
    # No secret on a command line (ps, /proc/<pid>/cmdline): no $(VAR) expansion of a
    # sensitive variable in any command, argument or probe.
    for where, spec in pod_specs(objects):
        for c in containers(spec):
            argv = [*c.get("command", []), *c.get("args", [])]
            argv += [a for p in ("livenessProbe", "readinessProbe", "startupProbe")
                     for a in c.get(p, {}).get("exec", {}).get("command", [])]
            assert not [a for a in argv if re.search(r"\$\([A-Z_]*(PASSWORD|SECRET|TOKEN|KEY)", a)], where
    instance = yaml.safe_load(config_map(objects, "-instance")["dagster.yaml"])
    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_run_non_root_with_requests(variant: str) -> None:
    for where, spec in pod_specs(render(variant)):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        for c in containers(spec):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], (where, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), (where, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), (where, c["name"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_dagster_configs_pass_dagster_schemas(variant: str, tmp_path: Path) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.workspace.config_schema import ensure_workspace_config
    from dagster_k8s import K8sRunLauncher

    objects = render(variant)
    (tmp_path / "dagster.yaml").write_text(config_map(objects, "-instance")["dagster.yaml"])
    config, _ = dagster_instance_config(str(tmp_path))
    launcher = config["run_launcher"]["config"]
    assert process_config(K8sRunLauncher.config_type(), launcher).success
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["granularity"] == "run"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    # a killed run worker's `training` slot is freed, as in the local instance
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] == 30 == yaml.safe_load(
        instance_config("local"))["run_monitoring"]["free_slots_after_run_end_seconds"]
    env_cm = "mlp-ml-platform-env"
    assert launcher["env_config_maps"] == [env_cm]
    workspace = yaml.safe_load(config_map(objects, "-workspace")["workspace.yaml"])
    ensure_workspace_config(workspace, "workspace.yaml")
    assert workspace["load_from"][0]["grpc_server"]["host"] == "mlp-ml-platform-user-code"
    # The daemon sets the `training` pool's limit the assets use.
    (daemon,) = [s for w, s in pod_specs(objects) if w.endswith("-daemon")]
    assert daemon["initContainers"][0]["command"][:5] == ["dagster", "instance", "concurrency", "set",
                                                          "training"]


def test_compute_logs_on_s3_config_is_valid(tmp_path: Path) -> None:
    from dagster._config import process_config
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"dagster": {"computeLogs": {"s3": True}},
                                      "s3": {"endpointUrl": "http://minio.storage:9000"}}))
    text = helm_run("template", "mlp", CHART, "--namespace", NAMESPACE, "-f", values)
    objects = tuple(d for d in yaml.safe_load_all(text) if d)
    logs = yaml.safe_load(config_map(objects, "-instance")["dagster.yaml"])["compute_logs"]
    assert logs["class"] == "S3ComputeLogManager"
    with env(ML_PLATFORM_S3_BUCKET="ml-platform"):  # `{env: ...}`: from the env ConfigMap
        assert process_config(S3ComputeLogManager.config_type(), logs["config"]).success
    assert config_map(objects, "-env")["AWS_ENDPOINT_URL_S3"] == "http://minio.storage:9000"


def test_webserver_read_only_and_mlflow_auth(tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"dagster": {"webserver": {"readOnly": True}},
                                      "mlflow": {"auth": {"enabled": True}}}))
    text = helm_run("template", "mlp", CHART, "--namespace", NAMESPACE, "-f", values)
    objects = tuple(d for d in yaml.safe_load_all(text) if d)
    for obj in objects:
        validate(obj)
    specs = dict(pod_specs(objects))
    assert "--read-only" in specs["Deployment/mlp-ml-platform-webserver"]["containers"][0]["command"]
    mlflow = specs["Deployment/mlp-ml-platform-mlflow"]
    assert "basic-auth" in mlflow["containers"][0]["command"]
    assert mlflow["volumes"][-1]["secret"]["secretName"] == "ml-platform-mlflow-auth"
    # clients get the credentials from the client Secret: run workers and training pods too
    pod = json.loads(config_map(objects, "-env")["ML_PLATFORM_TRAINING_POD"])
    assert pod["env_secrets"] == ["ml-platform-s3", "ml-platform-mlflow-client"]
    instance = yaml.safe_load(config_map(objects, "-instance")["dagster.yaml"])
    assert instance["run_launcher"]["config"]["env_secrets"] == pod["env_secrets"]


def test_gpu_pool_values_reach_the_training_pod() -> None:
    """The chart's training settings (ML_PLATFORM_TRAINING_POD) and a spec give a valid pod
    on the GPU pool: GPUs from the spec, node selector and tolerations from both."""
    spec = next(s for s in load_specs() if s.name == "listing_price")
    settings = json.loads(config_map(render("gpu-pool"), "-env")["ML_PLATFORM_TRAINING_POD"])
    trainer = K8sPodTrainer(compute={spec.name: spec.compute.model_dump(mode="json", exclude_none=True)},
                            **settings)
    pod = render_training_pod(spec, trainer)
    validate(pod)
    assert pod["metadata"]["namespace"] == NAMESPACE
    assert pod["spec"]["serviceAccountName"] == "mlp-ml-platform-workload"
    assert pod["spec"]["nodeSelector"] == {"ml-platform/pool": "gpu", **spec.compute.node_selector}
    keys = [t["key"] for t in pod["spec"]["tolerations"]]
    assert keys == ["nvidia.com/gpu", "ml-platform/pool"]  # the spec's duplicate merged away
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"][GPU_RESOURCE] == str(spec.compute.gpu)
    assert container["image"] == "ml-platform:0.1.0"
    assert {"configMapRef": {"name": "mlp-ml-platform-env"}} in container["envFrom"]
    assert {"secretRef": {"name": "ml-platform-s3"}} in container["envFrom"]
    # Code sync on by default: the pod is told which package to fetch and which lock to check.
    assert settings["code_sync"] is True
    names = {e["name"] for e in container["env"]}
    assert {"ML_PLATFORM_CODE_PACKAGE", "ML_PLATFORM_CODE_HASH", "ML_PLATFORM_RUNTIME_LOCK"} <= names


# Each command the chart runs, mapped to the pinned CLI that must accept every flag it passes.
_CLIS = [("dagster-webserver",), ("dagster-daemon", "run"), ("dagster-daemon", "liveness-check"),
         ("dagster", "api", "grpc-health-check"), ("dagster", "api", "grpc"),
         ("dagster", "instance", "concurrency", "set"), ("dagster", "instance", "migrate"),
         ("mlflow", "server")]
# One interpreter reads every CLI's click options (seven `--help` processes take 3x as long).
_OPTIONS = """
import json, sys, click
from dagster._cli import cli as dagster
from dagster._daemon.cli import cli as daemon
from dagster_webserver.cli import dagster_webserver
from mlflow.cli import cli as mlflow
roots = {"dagster-webserver": dagster_webserver, "dagster-daemon": daemon, "dagster": dagster,
         "mlflow": mlflow}
out = {}
for path in json.loads(sys.argv[1]):
    cmd = roots[path[0]]
    for name in path[1:]:
        cmd = cmd.get_command(click.Context(cmd), name)
    out[" ".join(path)] = [o for p in cmd.params for o in (*p.opts, *p.secondary_opts)]
print(json.dumps(out))
"""


@pytest.mark.integration  # real processes
def test_every_flag_the_chart_passes_exists_in_the_pinned_clis(tmp_path: Path) -> None:
    import importlib.util
    import subprocess
    import sys

    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"dagster": {"webserver": {"readOnly": True, "pathPrefix": "/d"}},
                                      "mlflow": {"auth": {"enabled": True}}}))
    text = helm_run("template", "mlp", CHART, "--namespace", NAMESPACE, "-f", values)
    specs = [spec for _, spec in pod_specs(tuple(yaml.safe_load_all(text)))]
    commands = [c["command"] for spec in specs for c in containers(spec) if c.get("command")]
    commands += [probe["exec"]["command"] for spec in specs for c in containers(spec)
                 for probe in (c.get("livenessProbe"), c.get("readinessProbe"))
                 if probe and "exec" in probe and probe["exec"]["command"][0] != "pg_isready"]
    done = subprocess.run([sys.executable, "-c", _OPTIONS, json.dumps(_CLIS)], capture_output=True,
                          text=True, check=True)
    options = {tuple(k.split()): set(v) for k, v in json.loads(done.stdout).items()}
    checked = set()
    for command in commands:
        if command[:2] == ["python", "-m"]:  # the platform's own modules (the upgrade hook's)
            assert importlib.util.find_spec(command[2]), command
            continue
        cli = next(c for c in _CLIS if tuple(command[:len(c)]) == c)
        unknown = {a for a in command if a.startswith("--")} - options[cli]
        assert not unknown, (cli, unknown)
        checked.add(cli)
    assert checked == set(_CLIS)


def test_dockerfile_pins_torch_and_runs_non_root() -> None:
    """The image the chart runs: torch pinned, exactly the runtime lock, the repo installed
    editable without resolving anything more, user 10001 (the chart's runAsUser)."""
    text = (CHART.parents[1] / "Dockerfile").read_text()
    assert '"torch==2.13.0"' in text and "pip install -r runtime.lock" in text
    assert "pip install --no-deps -e ." in text
    (user,) = re.findall(r"^USER (.+)$", text, re.M)
    assert user.split(":")[0] == "10001"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001


def _template(tmp_path: Path, values: dict, *flags: str) -> tuple[dict, ...]:
    file = tmp_path / "v.yaml"
    file.write_text(yaml.safe_dump(values))
    text = helm_run("template", "mlp", CHART, "--namespace", NAMESPACE, "-f", file, *flags)
    return tuple(d for d in yaml.safe_load_all(text) if d)


def test_chart_installs_on_kubernetes_1_20(tmp_path: Path) -> None:
    """The local cluster is 1.20 (scripts/cluster/): the chart's kubeVersion admits it."""
    objects = _template(tmp_path, {}, "--kube-version", "1.20.2")
    assert any(o["kind"] == "Deployment" for o in objects)
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == ">=1.20.0-0"


@pytest.mark.parametrize(("values", "error"), [
    ({"dagster": {"concurency": {"trainingSlots": 2}}}, "additional properties 'concurency'"),
    ({"training": {"shmSize": "lots"}}, "/training/shmSize"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"dagster": {"concurrency": {"trainingSlots": 0}}}, "/dagster/concurrency/trainingSlots"),
    ({"costs": {"prices": {"gpu": 2}}}, "additional properties 'gpu'"),
    ({"costs": {"prices": {"gpu_hour": -1}}}, "/costs/prices/gpu_hour"),
])
def test_values_schema_refuses_bad_values(tmp_path: Path, values: dict, error: str) -> None:
    file = tmp_path / "v.yaml"
    file.write_text(yaml.safe_dump(values))
    with pytest.raises(AssertionError, match=re.escape(error)):
        helm_run("template", "mlp", CHART, "-f", file)


def test_user_code_server_has_startup_liveness_and_readiness_probes() -> None:
    specs = dict(pod_specs(render("default")))
    (container,) = specs["Deployment/mlp-ml-platform-user-code"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"][:3] == ["dagster", "api", "grpc-health-check"], probe
    # Loading the definitions may take minutes: the startup probe, not liveness, allows it.
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300


def test_gpu_pool_shm_fits_the_shipped_specs_memory() -> None:
    """/dev/shm is memory-backed: it counts against the training pod's memory limit."""
    from kubernetes.utils import parse_quantity

    settings = json.loads(config_map(render("gpu-pool"), "-env")["ML_PLATFORM_TRAINING_POD"])
    for spec in load_specs():
        assert parse_quantity(settings["shm_size"]) < parse_quantity(spec.compute.memory), spec.name


def test_shm_larger_than_the_memory_limit_is_refused_at_render() -> None:
    spec = next(s for s in load_specs() if s.name == "listing_price")
    trainer = K8sPodTrainer(compute={spec.name: spec.compute.model_dump(mode="json", exclude_none=True)},
                            shm_size="8Gi")
    assert spec.compute.memory == "4Gi"
    with pytest.raises(ValueError, match=r"training.shmSize\) must not exceed model listing_price's "
                                         r"compute.memory 4Gi"):
        render_training_pod(spec, trainer)


def test_shipped_specs_pin_no_provider_node_label() -> None:
    """Off GKE a `cloud.google.com/...` selector leaves the pod Pending for hours: placement
    comes from the chart's `training.nodeSelector` (values-gpu-pool.yaml) instead."""
    providers = ("cloud.google.com/", "eks.amazonaws.com/", "kubernetes.azure.com/")
    for spec in load_specs():
        assert not [k for k in spec.compute.node_selector if k.startswith(providers)], spec.name


def test_ca_bundle_and_proxy_reach_every_pod(tmp_path: Path) -> None:
    objects = _template(tmp_path, {"caBundle": {"configMap": "corp-ca"},
                                   "proxy": {"httpsProxy": "http://proxy.corp:3128",
                                             "noProxy": ".corp"}})
    for obj in objects:
        validate(obj)
    env_cm = config_map(objects, "-env")
    ca_file = "/etc/ml-platform/ca/ca-certificates.crt"
    assert env_cm["SSL_CERT_FILE"] == env_cm["REQUESTS_CA_BUNDLE"] == env_cm["AWS_CA_BUNDLE"] == ca_file
    assert env_cm["HTTPS_PROXY"] == env_cm["https_proxy"] == "http://proxy.corp:3128"
    no_proxy = env_cm["NO_PROXY"].split(",")
    assert {".corp", ".svc", "mlp-ml-platform-mlflow", "mlp-ml-platform-postgresql"} <= set(no_proxy)
    # Chart pods mount the bundle; MLflow (no env ConfigMap) gets the variables itself.
    for where, spec in pod_specs(objects):
        if "postgresql" in where:
            continue
        assert {"name": "ca-bundle", "configMap": {"name": "corp-ca", "items": [
            {"key": "ca-certificates.crt", "path": "ca-certificates.crt"}]}} in spec["volumes"], where
        for c in containers(spec):
            assert {"name": "ca-bundle", "mountPath": "/etc/ml-platform/ca", "readOnly": True} \
                in c["volumeMounts"], (where, c["name"])
    mlflow = dict(pod_specs(objects))["Deployment/mlp-ml-platform-mlflow"]["containers"][0]
    assert {"name": "SSL_CERT_FILE", "value": ca_file} in mlflow["env"]
    # Run workers (dagster.yaml) and training pods (ML_PLATFORM_TRAINING_POD) too.
    launcher = yaml.safe_load(config_map(objects, "-instance")["dagster.yaml"])["run_launcher"]["config"]
    assert "ca-bundle" in [v["name"] for v in launcher["volumes"]]
    assert "ca-bundle" in [m["name"] for m in launcher["volume_mounts"]]
    spec = next(s for s in load_specs() if s.name == "listing_price")
    settings = json.loads(env_cm["ML_PLATFORM_TRAINING_POD"])
    trainer = K8sPodTrainer(compute={spec.name: spec.compute.model_dump(mode="json", exclude_none=True)},
                            **settings)
    pod = render_training_pod(spec, trainer)
    validate(pod)
    assert "ca-bundle" in [v["name"] for v in pod["spec"]["volumes"]]
    assert {"name": "ca-bundle", "mountPath": "/etc/ml-platform/ca", "readOnly": True} \
        in pod["spec"]["containers"][0]["volumeMounts"]


def test_migrations_run_as_an_idempotent_pre_upgrade_hook(tmp_path: Path) -> None:
    """A pre-upgrade Job: `mlflow db upgrade` (through `ml_platform.tracking.db_upgrade`, the
    database URI in the environment, not on the command line), then `dagster instance migrate`
    with the instance config; no hook with migrations.enabled false."""
    objects = _template(tmp_path, {})
    (job,) = [o for o in objects if o["kind"] == "Job"]
    validate(job)
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    pod = job["spec"]["template"]["spec"]
    (mlflow,), (dagster,) = pod["initContainers"], pod["containers"]
    assert mlflow["command"] == ["python", "-m", "ml_platform.tracking.db_upgrade"]
    assert "MLFLOW_BACKEND_STORE_URI" in {e["name"] for e in mlflow["env"]}
    assert dagster["command"] == ["dagster", "instance", "migrate"]
    assert {"name": "instance", "mountPath": "/opt/dagster/dagster_home", "readOnly": True} in \
        dagster["volumeMounts"]
    # Its dagster.yaml holds only the storage: the run launcher would need a token.
    (volume,) = [v for v in pod["volumes"] if v["name"] == "instance"]
    assert volume["configMap"]["name"] == "mlp-ml-platform-migrate-config"
    configs = {o["metadata"]["name"]: yaml.safe_load(o["data"]["dagster.yaml"])
               for o in objects if o["kind"] == "ConfigMap" and "dagster.yaml" in o["data"]}
    hook_instance = configs["mlp-ml-platform-migrate-config"]
    assert set(hook_instance) == {"telemetry", "storage"}
    assert hook_instance["storage"] == configs["mlp-ml-platform-instance"]["storage"]
    assert pod["automountServiceAccountToken"] is False
    assert not [o for o in _template(tmp_path, {"migrations": {"enabled": False}})
                if o["kind"] == "Job"]


def _allowed(policy: dict) -> set[str]:
    """The release's components a NetworkPolicy lets in (through its component selector)."""
    return {v for rule in policy["spec"].get("ingress", []) for peer in rule.get("from", [])
            for e in peer.get("podSelector", {}).get("matchExpressions", [])
            if e["key"] == "app.kubernetes.io/component" for v in e["values"]}


def test_network_policies_allow_only_what_the_platform_needs(tmp_path: Path) -> None:
    """Every pod of the release is selected by a policy (run workers and training pods carry
    the release's label); PostgreSQL and MLflow admit only the platform's pods (and training
    pods for MLflow), user code only the webserver and daemon, training pods only each other
    (rendezvous, NCCL); the UI whom `webserverFrom` names; nothing reaches the daemon, run
    workers or the hook. Render-tested only: the local cluster's bridge does not enforce them."""
    ingress_controller = {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}
    objects = _template(tmp_path, {"networkPolicy": {"webserverFrom": [ingress_controller]}})
    policies = {o["metadata"]["name"].removeprefix("mlp-ml-platform-"): o
                for o in objects if o["kind"] == "NetworkPolicy"}
    for policy in policies.values():
        validate(policy)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert _allowed(policies["postgresql"]) == {"webserver", "daemon", "user-code", "run-worker",
                                                "mlflow", "migrate"}
    assert _allowed(policies["mlflow"]) == {"webserver", "daemon", "user-code", "run-worker",
                                            "training"}
    assert _allowed(policies["user-code"]) == {"webserver", "daemon"}
    assert policies["webserver"]["spec"]["ingress"][0]["from"] == [ingress_controller]
    (training_rule,) = policies["training"]["spec"]["ingress"]
    assert "ports" not in training_rule  # rendezvous 29500 and NCCL's own ports
    assert training_rule["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": "mlp", "app.kubernetes.io/component": "training"}
    assert "ingress" not in policies["no-ingress"]["spec"]
    # The selectors find the pods: the run launcher's labels and the training pods' labels.
    instance = yaml.safe_load(config_map(objects, "instance")["dagster.yaml"])
    run_labels = instance["run_launcher"]["config"]["labels"]
    assert run_labels["app.kubernetes.io/instance"] == "mlp"
    training = json.loads(config_map(objects, "env")["ML_PLATFORM_TRAINING_POD"])
    assert training["pod_labels"]["app.kubernetes.io/instance"] == "mlp"
    with env(ML_PLATFORM_TRAINING_POD=json.dumps(training)):
        pod = render_training_pod(load_specs()[0])
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "mlp"
    assert not [o for o in _template(tmp_path, {"networkPolicy": {"enabled": False}})
                if o["kind"] == "NetworkPolicy"]


def test_scheduler_hooks_reach_the_training_pod(tmp_path: Path) -> None:
    """training.schedulerName, runtimeClassName, affinity, podLabels and podAnnotations (a
    Kueue queue) reach the pod the trainer builds from the chart's settings."""
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [
            {"key": "gpu", "operator": "In", "values": ["h100"]}]}}]}}
    objects = _template(tmp_path, {"training": {
        "schedulerName": "volcano", "runtimeClassName": "nvidia", "affinity": affinity,
        "podLabels": {"kueue.x-k8s.io/queue-name": "gpu"}, "podAnnotations": {"a": "b"}}})
    settings = json.loads(config_map(objects, "env")["ML_PLATFORM_TRAINING_POD"])
    spec = load_specs()[0]
    with env(ML_PLATFORM_TRAINING_POD=json.dumps(settings)):
        pod = render_training_pod(spec)
    validate(pod)
    assert (pod["spec"]["schedulerName"], pod["spec"]["runtimeClassName"]) == ("volcano", "nvidia")
    assert pod["spec"]["affinity"] == affinity
    assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
    assert pod["metadata"]["annotations"]["a"] == "b"


def test_cost_prices_reach_the_training_request(tmp_path: Path) -> None:
    """costs.prices becomes ML_PLATFORM_PRICES on every platform pod, which the `trained` step
    puts in the training request; none by default (no cost estimate)."""
    from ml_platform.compute.request import TrainingRequest

    assert "ML_PLATFORM_PRICES" not in config_map(render("default"), "-env")
    prices = {"gpu_hour": 2.5, "cpu_hour": 0.04, "memory_gib_hour": 0.005}
    data = config_map(_template(tmp_path, {"costs": {"prices": prices}}), "env")
    spec = load_specs()[0]
    with env(ML_PLATFORM_PRICES=data["ML_PLATFORM_PRICES"]):
        request = TrainingRequest.for_spec(spec, training_set_uri="u", mlflow_run_id="r",
                                           checkpoint_dir="c")
    assert request.prices == prices


def test_code_sync_off_runs_the_image_code(tmp_path: Path) -> None:
    """training.codeSync false (a locked-down cluster): the pods are told no package, only the
    content hash the image's code must have."""
    objects = _template(tmp_path, {"training": {"codeSync": False}})
    training = json.loads(config_map(objects, "env")["ML_PLATFORM_TRAINING_POD"])
    assert training["code_sync"] is False
    with env(ML_PLATFORM_TRAINING_POD=json.dumps(training)):
        pod = render_training_pod(load_specs()[0])
    code_env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]
                if e["name"].startswith("ML_PLATFORM_CODE")}
    assert code_env == {"ML_PLATFORM_CODE_HASH": package_hash()}
