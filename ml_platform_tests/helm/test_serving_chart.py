"""The chart's model endpoints (`serving` in values), rendered with a real `helm` binary: off
by default (no object, no extra RBAC); per enabled model a Deployment + Service running MLflow's
scoring server, which validate against the Kubernetes schemas, roll without dropping a pod
(maxUnavailable 0, readiness on /ping), request no GPU unless `serving.gpu` asks, and carry
what the `serving` step patches (the `model` container's MODEL_URI, the version annotation);
the settings the step reads ($ML_PLATFORM_SERVING) name exactly those objects; RBAC grows by
get/patch of Deployments only. The KServe variant renders an InferenceService with the fields
KServe requires for the MLflow format (no KServe CRD schema is available offline, so they are
checked one by one). No cluster is involved."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_platform.compute.k8s import GPU_RESOURCE
from ml_platform.serving.cluster import (
    CONTAINER,
    VERSION_ANNOTATION,
    ClusterServing,
    deployment_patch,
    storage_uri,
)
from ml_platform_tests.kube import CHART, NAMESPACE, config_map, helm_run, render, validate

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _render(tmp_path: Path, serving: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    values = tmp_path / "serving.yaml"
    values.write_text(yaml.safe_dump({"serving": serving}))
    text = helm_run("template", "mlp", CHART, "--namespace", NAMESPACE, "-f", values)
    return tuple(d for d in yaml.safe_load_all(text) if d)


def _role_rules(objects: tuple[dict[str, Any], ...]) -> set[tuple[str, str, str]]:
    (role,) = [o for o in objects if o["kind"] == "Role"]
    return {(g, r, ",".join(rule["verbs"])) for rule in role["rules"]
            for g in rule["apiGroups"] for r in rule["resources"]}


def _settings(objects: tuple[dict[str, Any], ...]) -> ClusterServing:
    return ClusterServing(**json.loads(config_map(objects, "-env")["ML_PLATFORM_SERVING"]))


def test_off_by_default() -> None:
    objects = render("default")
    assert not [o for o in objects if "-serve-" in o["metadata"]["name"]]
    assert "ML_PLATFORM_SERVING" not in config_map(objects, "-env")
    assert not [r for r in _role_rules(objects) if r[0] in ("apps", "serving.kserve.io")]


def test_a_deployment_and_service_per_enabled_model(tmp_path: Path) -> None:
    objects = _render(tmp_path, {"models": {"listing_price": {"enabled": True, "replicas": 2}}})
    for obj in objects:
        validate(obj)
    settings = _settings(objects)
    assert settings.namespace == NAMESPACE and settings.target == "deployment"
    assert settings.models == {"listing_price": "mlp-ml-platform-serve-listing-price"}
    assert settings.artifacts_uri == "s3://ml-platform/mlflow-artifacts"
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"
                     and o["metadata"]["name"] == settings.models["listing_price"]]
    (service,) = [o for o in objects if o["kind"] == "Service"
                  and o["metadata"]["name"] == settings.models["listing_price"]]
    assert not [o for o in objects if "feed-ranking" in o["metadata"]["name"]]  # not enabled

    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = spec["template"]
    assert pod["metadata"]["annotations"] == {VERSION_ANNOTATION: ""}
    (container,) = pod["spec"]["containers"]
    assert container["name"] == CONTAINER
    assert container["command"][:5] == ["mlflow", "models", "serve", "-m", "$(MODEL_URI)"]
    assert "--env-manager" in container["command"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODEL_URI"] == "models:/listing_price@production"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert GPU_RESOURCE not in json.dumps(pod)
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["selector"]["ml-platform/model"] == "listing_price"

    # what the `serving` step patches exists in the template it patches
    patch = deployment_patch("listing_price", "7")["spec"]["template"]
    assert set(patch["metadata"]["annotations"]) <= set(pod["metadata"]["annotations"])
    (patched,) = patch["spec"]["containers"]
    assert patched["name"] == container["name"]
    assert {e["name"] for e in patched["env"]} <= set(env)
    assert patched["env"] == [{"name": "MODEL_URI", "value": "models:/listing_price/7"}]

    added = _role_rules(objects) - _role_rules(render("default"))
    assert added == {("apps", "deployments", "get,patch")}


def test_serving_pods_request_a_gpu_only_when_asked(tmp_path: Path) -> None:
    objects = _render(tmp_path, {"gpu": 1, "models": {"feed_ranking": {"enabled": True}}})
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and "-serve-" in o["metadata"]["name"]]
    validate(deployment)
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits[GPU_RESOURCE] == 1


def test_kserve_inference_service_has_the_required_fields(tmp_path: Path) -> None:
    uri = "s3://ml-platform/mlflow-artifacts/1/models/m-abc/artifacts"
    objects = _render(tmp_path, {"target": "kserve", "models": {
        "listing_price": {"enabled": True, "storageUri": uri}}})
    assert not [o for o in objects if o["kind"] == "Deployment" and "-serve-" in o["metadata"]["name"]]
    (isvc,) = [o for o in objects if o["kind"] == "InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert DNS_1035.match(isvc["metadata"]["name"]) and len(isvc["metadata"]["name"]) <= 63
    assert isvc["metadata"]["annotations"] == {VERSION_ANNOTATION: ""}
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "mlflow"}
    assert model["protocolVersion"] == "v2"  # KServe's MLflow runtime (MLServer) speaks v2
    assert model["storageUri"] == uri
    assert {"cpu", "memory"} <= set(model["resources"]["requests"])
    assert GPU_RESOURCE not in json.dumps(isvc)
    assert predictor["minReplicas"] == 1
    assert predictor["serviceAccountName"] == "mlp-ml-platform-workload"
    assert _settings(objects).target == "kserve"
    added = _role_rules(objects) - _role_rules(render("default"))
    assert added == {("serving.kserve.io", "inferenceservices", "get,patch")}


def test_kserve_without_storage_uri_and_unknown_targets_fail(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"serving.models.listing_price.storageUri is required"):
        _render(tmp_path, {"target": "kserve", "models": {"listing_price": {"enabled": True}}})
    with pytest.raises(AssertionError, match=r"target"):
        _render(tmp_path, {"target": "seldon", "models": {"listing_price": {"enabled": True}}})


def test_storage_uri_of_a_version_served_through_mlflow() -> None:
    assert storage_uri("mlflow-artifacts:/1/models/m-abc/artifacts", "s3://b/mlflow-artifacts/") == (
        "s3://b/mlflow-artifacts/1/models/m-abc/artifacts")
    assert storage_uri("s3://elsewhere/x", "s3://b/p") == "s3://elsewhere/x"
