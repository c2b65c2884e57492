"""`<model>/serving`: what inference reads, following `production`."""


from typing import Any

import dagster as dg

from ml_platform import names
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.retries import MLFLOW_RETRY, fail_fast
from ml_platform.storage.interfaces import LakeStore
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import serving_manifest


def serving_metadata(lake: LakeStore, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the serving manifest; metadata of the `serving` materialization."""
    lake_key = names.serving_lake_key(manifest["model"])
    lake.write_json(lake_key, manifest)
    return {"version": manifest["version"], "path": dg.MetadataValue.path(lake.uri(lake_key)),
            "manifest": dg.MetadataValue.json(manifest)}


def serving_asset(chain: Chain) -> dg.AssetsDefinition:
    @dg.asset(key=chain.key("serving"), deps=[chain.key("production")], kinds={"json"},
              retry_policy=MLFLOW_RETRY, **chain.group)
    def serving(lake: LakeStore, mlflow: MlflowTracker) -> dg.MaterializeResult:
        """The serving manifest inference reads: model URI, version and metrics."""
        with fail_fast(mlflow):
            return dg.MaterializeResult(metadata=serving_metadata(lake, serving_manifest(mlflow, chain.name)))

    return serving
