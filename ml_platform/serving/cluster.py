"""The `k8s` profile's endpoints: per model, the chart's Deployment running MLflow's scoring
server (or KServe's InferenceService), rolled to a version by the `serving` step.

The chart puts where they are in `$ML_PLATFORM_SERVING` (JSON: namespace, target, rollout
timeout, MLflow's artifact root, and the object name of each enabled model). Rolling a
Deployment sets `MODEL_URI=models:/<model>/<version>` and the pod-template annotation
`ml-platform/model-version`, then waits until every replica runs the new template; the
rolling update (maxUnavailable 0, readiness on /ping) keeps the old pods answering until the
new ones do. A rollout that does not complete is undone (the old version keeps serving) and
fails with the new pods' reason.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ml_platform.serving.endpoint import EndpointError
from ml_platform.settings import SERVING_ENV

VERSION_ANNOTATION = "ml-platform/model-version"
CONTAINER = "model"


class RolloutError(EndpointError):
    """The endpoint did not move to the new version; the message says why in one line."""


@dataclass(frozen=True)
class ClusterServing:
    """The chart's serving settings (`$ML_PLATFORM_SERVING`)."""

    namespace: str
    target: str = "deployment"
    rollout_timeout_s: float = 600.0
    artifacts_uri: str = ""
    models: dict[str, str] = field(default_factory=dict)
    """model → Deployment or InferenceService name, for the enabled models."""

    @classmethod
    def from_env(cls) -> ClusterServing | None:
        raw = os.environ.get(SERVING_ENV)
        if not raw:
            return None
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{SERVING_ENV} is not the chart's serving settings: {exc}") from exc


def deployment_patch(model: str, version: str) -> dict[str, Any]:
    """The strategic-merge patch that rolls the Deployment of `model` to `version`."""
    return {"spec": {"template": {
        "metadata": {"annotations": {VERSION_ANNOTATION: version}},
        "spec": {"containers": [{"name": CONTAINER, "env": [
            {"name": "MODEL_URI", "value": f"models:/{model}/{version}"}]}]},
    }}}


def inference_service_patch(version: str, storage_uri: str) -> dict[str, Any]:
    """The merge patch that points the InferenceService at `storage_uri` (a version's files)."""
    return {"metadata": {"annotations": {VERSION_ANNOTATION: version}},
            "spec": {"predictor": {"model": {"storageUri": storage_uri}}}}


def storage_uri(download_uri: str, artifacts_uri: str) -> str:
    """A model version's files as KServe's storage initializer reads them (s3://...): MLflow's
    proxied `mlflow-artifacts:/` URIs resolved against the server's artifact root."""
    if download_uri.startswith("mlflow-artifacts:"):
        if not artifacts_uri:
            raise RolloutError("the chart's serving settings lack MLflow's artifact root")
        path = download_uri.removeprefix("mlflow-artifacts:").lstrip("/")
        return f"{artifacts_uri.rstrip('/')}/{path}"
    return download_uri


def roll(settings: ClusterServing, model: str, version: str, *, download_uri: str = "") -> str:
    """Roll `model`'s endpoint to `version` and wait; returns its in-cluster URL."""
    import kubernetes

    name = settings.models[model]
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    if settings.target == "kserve":
        return _roll_inference_service(settings, name, version,
                                       storage_uri(download_uri, settings.artifacts_uri))
    apps = kubernetes.client.AppsV1Api()
    before = apps.read_namespaced_deployment(name, settings.namespace)
    previous = (before.spec.template.metadata.annotations or {}).get(VERSION_ANNOTATION, "")
    apps.patch_namespaced_deployment(name, settings.namespace, deployment_patch(model, version))
    try:
        _wait_rollout(apps, settings, name, settings.rollout_timeout_s)
    except RolloutError:
        if previous:  # back to the old template: its ReplicaSet is the one serving
            apps.patch_namespaced_deployment(name, settings.namespace,
                                             deployment_patch(model, previous))
        raise
    return f"http://{name}.{settings.namespace}.svc"


def _wait_rollout(apps: Any, settings: ClusterServing, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        d = apps.read_namespaced_deployment(name, settings.namespace)
        s, want = d.status, d.spec.replicas or 0
        if ((s.observed_generation or 0) >= d.metadata.generation
                and (s.updated_replicas or 0) == want and (s.available_replicas or 0) == want
                and (s.replicas or 0) == want):
            return
        stalled = [c for c in (s.conditions or [])
                   if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"]
        if stalled or time.monotonic() > deadline:
            raise RolloutError(f"the rollout of {name} did not complete: "
                               f"{_pods_reason(settings, d) or 'no new pod became ready'}")
        time.sleep(2)


def _pods_reason(settings: ClusterServing, deployment: Any) -> str:
    """What keeps the new pods from running: their containers' waiting or termination reasons."""
    import kubernetes

    selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
    want = (deployment.spec.template.metadata.annotations or {}).get(VERSION_ANNOTATION)
    pods = kubernetes.client.CoreV1Api().list_namespaced_pod(settings.namespace,
                                                             label_selector=selector).items
    reasons = []
    for pod in pods:
        if (pod.metadata.annotations or {}).get(VERSION_ANNOTATION) != want:
            continue
        for c in pod.status.container_statuses or []:
            state = c.state.waiting or c.state.terminated
            last = c.last_state.terminated if c.last_state else None
            if state is not None and state.reason:
                why = (last.message if last and last.message else state.message) or ""
                reasons.append(f"pod {pod.metadata.name}: {state.reason}"
                               + (f": {why.strip().splitlines()[-1][:200]}" if why.strip() else ""))
        if not reasons and pod.status.phase == "Pending":
            conditions = [c.message for c in pod.status.conditions or [] if c.message]
            reasons.append(f"pod {pod.metadata.name}: Pending"
                           + (f": {conditions[-1][:200]}" if conditions else ""))
    return "; ".join(reasons)


def _roll_inference_service(settings: ClusterServing, name: str, version: str, uri: str) -> str:
    import kubernetes

    api = kubernetes.client.CustomObjectsApi()
    group, api_version, plural = "serving.kserve.io", "v1beta1", "inferenceservices"
    api.patch_namespaced_custom_object(group, api_version, settings.namespace, plural, name,
                                       inference_service_patch(version, uri))
    deadline = time.monotonic() + settings.rollout_timeout_s
    while True:
        obj = api.get_namespaced_custom_object(group, api_version, settings.namespace, plural, name)
        status = obj.get("status", {})
        ready = {c["type"]: c for c in status.get("conditions", [])}.get("Ready", {})
        if (status.get("observedGeneration", 0) >= obj["metadata"]["generation"]
                and ready.get("status") == "True"):
            return str(status.get("url", ""))
        if time.monotonic() > deadline:
            raise RolloutError(f"InferenceService {name} did not become ready with v{version}: "
                               f"{ready.get('message') or ready.get('reason') or 'no reason given'}")
        time.sleep(2)
