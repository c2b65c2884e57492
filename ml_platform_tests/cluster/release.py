"""The chart installed into the local cluster, as the cluster tests use it: a namespace with the
Secrets the chart expects, a volume for the bundled PostgreSQL, the model specs as a ConfigMap,
moto's S3 server on the node's address (pods reach it as they would reach S3), and `helm
install --wait` of helm/ml-platform with the project's image. The host then acts on the
release's stores as a user's laptop does: `ML_PLATFORM_PROFILE=k8s` with the Services'
cluster IPs (kube-proxy routes them from the node)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from ml_platform.specs import ModelSpec, load_specs
from ml_platform_tests.cluster.local import PROJECT_IMAGE, kubeconfig_path, namespace, wait_for
from ml_platform_tests.kube import CHART, helm

POSTGRES_IMAGE = os.environ.get("ML_PLATFORM_POSTGRES_IMAGE", "localhost/ml-platform-postgres:15")
RELEASE = "mlp"
FULLNAME = f"{RELEASE}-ml-platform"
BUCKET = "ml-platform"
S3_ENV = {"AWS_ACCESS_KEY_ID": "cluster-test", "AWS_SECRET_ACCESS_KEY": "cluster-test"}
VOLUMES = Path(os.environ.get("ML_PLATFORM_CLUSTER_RUN", "/var/lib/ml-platform-cluster")) / "volumes"


@dataclass
class Release:
    """A running release: its namespace, its Services' addresses and the host's environment
    for acting on its stores (the `k8s` profile)."""

    namespace: str
    node_ip: str
    s3_endpoint: str
    env: dict[str, str]
    specs: list[ModelSpec]
    values_file: Path

    @property
    def mlflow_url(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    @property
    def mlflow_database(self) -> str:
        """The chart's MLflow database, from the host (the PostgreSQL Service's cluster IP)."""
        e = self.env
        return (f"postgresql+psycopg2://{e['DAGSTER_PG_USERNAME']}:{e['DAGSTER_PG_PASSWORD']}"
                f"@{e['DAGSTER_PG_HOST']}:{e['DAGSTER_PG_PORT']}/mlflow")

    def upgrade(self, api: kubernetes.client.CoreV1Api) -> str:
        """`helm upgrade --wait` with the release's values (its hooks run first); helm's output.
        A failure carries the migration hook's logs."""
        try:
            return helm_cmd("upgrade", RELEASE, CHART, "--namespace", self.namespace,
                            "-f", self.values_file, "--wait", "--timeout", "10m")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{hook_logs(api, self.namespace)}") from None


def small_spec(name: str = "listing_price", **compute: Any) -> ModelSpec:
    """The shipped `name` spec shrunk for a 2-core node: a few hundred rows a day, 3 epochs,
    a half-core training pod with one advertised GPU, a sensor that reacts in seconds and a
    gate any trained model passes (the test is about the platform, not the model)."""
    spec = next(s for s in load_specs() if s.name == name)
    raw = spec.model_dump(mode="json")
    raw["dataset"].update(rows_per_day=400, sensor_interval_seconds=5, debounce_seconds=5)
    raw["training"].update(epochs=3, hidden=[32, 32])
    raw["promotion"]["gates"] = [{"metric": "mae", "op": "<", "threshold": 1000}]
    raw["promotion"]["not_worse_than_champion"] = False
    raw["compute"] = {"cpu": "500m", "memory": "1Gi", "gpu": 1, **compute}
    return ModelSpec.model_validate(raw)


def hook_logs(api: kubernetes.client.CoreV1Api, ns: str) -> str:
    """The logs of the migration hook's pods, every container (the failed hook Job stays)."""
    lines = []
    pods = api.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=migrate")
    for pod in pods.items:
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            try:
                text = api.read_namespaced_pod_log(pod.metadata.name, ns, container=container.name,
                                                   _preload_content=False).data.decode()
            except kubernetes.client.ApiException as exc:
                text = f"(no log: {exc.reason})"
            lines.append(f"--- {pod.metadata.name}/{container.name}:\n{text[-3000:]}")
    return "\n".join(lines)


def slow_spec(suffix: str = "slow", epochs: int = 400) -> ModelSpec:
    """`small_spec` as another model on a dataset of its own (`bookings_<suffix>`, landed only
    when a test wants it), training long enough to be interrupted mid-way."""
    raw = small_spec().model_dump(mode="json")
    raw["name"] = f"listing_price_{suffix}"
    raw["dataset"]["name"] = f"bookings_{suffix}"
    raw["training"]["epochs"] = epochs
    return ModelSpec.model_validate(raw)


def _node_ip(api: kubernetes.client.CoreV1Api) -> str:
    (node,) = api.list_node().items
    return next(a.address for a in node.status.addresses if a.type == "InternalIP")


@contextlib.contextmanager
def moto_on(ip: str) -> Iterator[str]:
    """moto's S3 server on the node's address with the release's bucket; its endpoint URL."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address=ip, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"

    def reset() -> None:
        # moto keeps its buckets in the process, not in the server: without a reset, the next
        # release's store holds this one's landed days (and its sensor ingests them).
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"),
                               timeout=30).close()

    try:
        reset()
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", **_boto_creds()
                     ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        reset()
        server.stop()


def _boto_creds() -> dict[str, str]:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"]}


def helm_cmd(*args: str | Path, timeout: float = 900) -> str:
    done = subprocess.run([helm(), "--kubeconfig", str(kubeconfig_path()), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"helm {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _postgres_volume(api: kubernetes.client.CoreV1Api, ns: str) -> tuple[str, Path]:
    """A hostPath PersistentVolume reserved for the StatefulSet's claim (the local cluster has
    no provisioner), owned by the image's postgres user (999)."""
    path = VOLUMES / ns
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 999, 999)
    name = f"{ns}-postgresql"
    api.create_persistent_volume({
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "ml-platform-tests"}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": str(path), "type": "Directory"},
                 "claimRef": {"namespace": ns, "name": f"data-{FULLNAME}-postgresql-0"}}})
    return name, path


def base_values(node_ip: str, s3_endpoint: str) -> dict[str, Any]:
    """Values for the local cluster: the project's and the PostgreSQL image from containerd,
    S3 on the node's address, small requests (two cores hold the platform and a training pod),
    MLflow reachable from the host by cluster IP."""
    small = {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    repository, tag = PROJECT_IMAGE.rsplit(":", 1)
    pg_repository, pg_tag = POSTGRES_IMAGE.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "postgresql": {"image": {"repository": pg_repository, "tag": pg_tag},
                       "persistence": {"size": "1Gi"}, "resources": small},
        "s3": {"bucket": BUCKET, "endpointUrl": s3_endpoint},
        "specs": {"configMap": "model-specs"},
        "dagster": {
            "webserver": {"resources": small}, "daemon": {"resources": small},
            "userCode": {"resources": small},
            "runWorker": {"resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                        "limits": {"cpu": "1", "memory": "2Gi"}}},
            "runMonitoring": {"pollIntervalSeconds": 10},
            # The orphan test deletes a run pod: a retried run would only train it again.
            "runRetries": {"enabled": False},
        },
        "mlflow": {"workers": 1, "resources": small, "allowedHosts": ["10.96.*"]},
        "training": {"shmSize": "256Mi"},
    }


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


@contextlib.contextmanager
def installed(api: kubernetes.client.CoreV1Api, tmp: Path, specs: list[ModelSpec],
              prefix: str = "mlp-e2e", values: dict[str, Any] | None = None) -> Iterator[Release]:
    """The chart installed in a fresh namespace for the block, with `specs` as the release's
    model specs; everything (namespace, volume, S3 server) removed after it."""
    ip = _node_ip(api)
    with moto_on(ip) as s3, namespace(api, prefix) as ns:
        pv, pv_path = _postgres_volume(api, ns)
        try:
            yield _install(api, ns, ip, s3, tmp, specs, values or {})
        finally:
            with contextlib.suppress(Exception):
                helm_cmd("uninstall", RELEASE, "--namespace", ns, "--wait", timeout=300)
            # The namespace (PVC included) goes with `namespace`; the volume is cluster-wide.
            with contextlib.suppress(kubernetes.client.ApiException):
                api.delete_persistent_volume(pv)
            shutil.rmtree(pv_path, ignore_errors=True)


def _install(api: kubernetes.client.CoreV1Api, ns: str, ip: str, s3: str, tmp: Path,
             specs: list[ModelSpec], values: dict[str, Any]) -> Release:
    password = secrets.token_hex(16)
    api.create_namespaced_secret(ns, {"metadata": {"name": "ml-platform-postgresql"},
                                      "stringData": {"postgresql-password": password}})
    api.create_namespaced_secret(ns, {"metadata": {"name": "ml-platform-s3"},
                                      "stringData": S3_ENV})
    spec_dir = tmp / "specs"
    spec_dir.mkdir(exist_ok=True)
    texts = {f"{s.name}.yaml": yaml.safe_dump(s.model_dump(mode="json", exclude_none=True))
             for s in specs}
    for name, text in texts.items():
        (spec_dir / name).write_text(text)
    api.create_namespaced_config_map(ns, {"metadata": {"name": "model-specs"}, "data": texts})
    file = tmp / "values.yaml"
    file.write_text(yaml.safe_dump(_merge(base_values(ip, s3), values)))
    started = time.monotonic()
    helm_cmd("install", RELEASE, CHART, "--namespace", ns, "-f", file, "--wait",
             "--timeout", "10m")
    print(f"helm install --wait: {time.monotonic() - started:.0f}s")

    def cluster_ip(service: str) -> str:
        return api.read_namespaced_service(f"{FULLNAME}-{service}", ns).spec.cluster_ip

    env = {
        "ML_PLATFORM_PROFILE": "k8s", "ML_PLATFORM_S3_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_S3": s3, "AWS_REGION": "us-east-1", **S3_ENV,
        "MLFLOW_TRACKING_URI": f"http://{cluster_ip('mlflow')}:5000",
        "ML_PLATFORM_HOME": str(tmp / "home"), "DAGSTER_HOME": str(tmp / "dagster_home"),
        "DAGSTER_PG_HOST": cluster_ip("postgresql"), "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": password,
        "DAGSTER_PG_DB": "dagster", "ML_PLATFORM_SPEC_DIR": str(spec_dir),
        "ML_PLATFORM_TRAINING_POD": "",
    }
    wait_for(lambda: _answers(env["MLFLOW_TRACKING_URI"]), 120, "the release's MLflow from the host")
    return Release(ns, ip, s3, env, specs, file)


def _answers(url: str) -> bool:
    from ml_platform.tracking.server import is_healthy

    return is_healthy(url)


def stop_daemon(release: Release) -> None:
    """Scale the release's Dagster daemon to zero and wait for its pod to go: no sensor acts
    on what the host lands, so a command run on the host is the only one at work."""
    apps = kubernetes.client.AppsV1Api(
        kubernetes.config.new_client_from_config(config_file=str(kubeconfig_path())))
    apps.patch_namespaced_deployment_scale(f"{FULLNAME}-daemon", release.namespace,
                                           {"spec": {"replicas": 0}})
    core = kubernetes.client.CoreV1Api(apps.api_client)
    wait_for(lambda: not core.list_namespaced_pod(
        release.namespace, label_selector="app.kubernetes.io/component=daemon").items,
        120, "the daemon's pod to go")


def laptop_env(api: kubernetes.client.CoreV1Api, release: Release, **training: Any
               ) -> dict[str, str]:
    """The environment of `ml-platform` run on the host as from a laptop against the release:
    the `k8s` profile, training in pods (`ML_PLATFORM_TRAINER=pod`) placed with the release's
    own training settings (its env ConfigMap, updated with `training`), the kubeconfig."""
    config = api.read_namespaced_config_map(f"{FULLNAME}-env", release.namespace).data
    settings = {**json.loads(config["ML_PLATFORM_TRAINING_POD"]), **training}
    return {**os.environ, **release.env, "ML_PLATFORM_TRAINER": "pod",
            "KUBECONFIG": str(kubeconfig_path()), "ML_PLATFORM_TRAINING_POD": json.dumps(settings)}
