"""`<model>/serving`: the endpoint follows `production`.

The step brings the running endpoint (`ml-platform serve`, see `ml_platform.serving`; in the
`k8s` profile the chart's Deployment or InferenceService of the model, when enabled) to the
production version with no failed request, and fails with the reason when the new version does
not load (the old one keeps serving). When no endpoint runs, it records the version to serve
(the serving manifest), which `serve` starts with.
"""


from typing import Any

import dagster as dg

from ml_platform import names
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.retries import MLFLOW_RETRY, fail_fast
from ml_platform.serving.cluster import ClusterServing, roll
from ml_platform.serving.endpoint import EndpointError, running_endpoint
from ml_platform.storage.interfaces import LakeStore
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import serving_manifest


def follow_production(tracker: MlflowTracker, lake: LakeStore, model: str) -> dict[str, Any]:
    """Switch the endpoint to `model`'s production version and record it in the serving
    manifest; returns the metadata of the `serving` materialization. Raises EndpointError
    (nothing recorded, the old version serving) when the endpoint does not switch."""
    manifest = serving_manifest(tracker, model)
    version = manifest["version"]
    cluster = ClusterServing.from_env()
    if cluster is not None and model in cluster.models:  # the chart's endpoint (k8s profile)
        files = (tracker.client().get_model_version_download_uri(model, version)
                 if cluster.target == "kserve" else "")
        manifest["endpoint"] = {"state": "serving", "target": cluster.target,
                                "url": roll(cluster, model, version, download_uri=files)}
    elif (endpoint := running_endpoint()) is not None:
        switched = endpoint.switch(model, version)
        manifest["endpoint"] = {"state": "serving", "url": endpoint.invocations_url(model),
                                "previous_version": switched.get("previous_version", ""),
                                "since": switched.get("since", "")}
    else:
        manifest["endpoint"] = {"state": "not running",
                                "note": "`ml-platform serve` serves this version when started"}
    return serving_metadata(lake, manifest)


def serving_metadata(lake: LakeStore, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the serving manifest; metadata of the `serving` materialization."""
    lake_key = names.serving_lake_key(manifest["model"])
    lake.write_json(lake_key, manifest)
    endpoint = manifest.get("endpoint", {})
    return {"version": manifest["version"], "path": dg.MetadataValue.path(lake.uri(lake_key)),
            "endpoint": endpoint.get("url") or endpoint.get("state", ""),
            "manifest": dg.MetadataValue.json(manifest)}


def serving_asset(chain: Chain) -> dg.AssetsDefinition:
    @dg.asset(key=chain.key("serving"), deps=[chain.key("production")], kinds={"mlflow"},
              retry_policy=MLFLOW_RETRY, **chain.group)
    def serving(lake: LakeStore, mlflow: MlflowTracker) -> dg.MaterializeResult:
        """The endpoint answering with the production version (`ml-platform serve`), switched
        with no failed request; the serving manifest records the version it serves."""
        with fail_fast(mlflow):
            try:
                return dg.MaterializeResult(metadata=follow_production(mlflow, lake, chain.name))
            except EndpointError as exc:
                raise dg.Failure(str(exc), allow_retries=False) from exc

    return serving
