"""The asset chain of one model, built from its spec, one module per stage: features →
training_set → trained → evaluation → registered → production → serving, and `predictions`
when the spec declares `batch_inference`. No model-specific code lives here: what differs
between models is in their specs and in `ml_platform.ml`."""


import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,  # not exported by dagster
)

from ml_platform import names
from ml_platform.pipeline.keys import model_key
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.model.evaluation import evaluation_asset
from ml_platform.pipeline.model.features import features_asset
from ml_platform.pipeline.model.predictions import predictions_asset
from ml_platform.pipeline.model.production import production_asset
from ml_platform.pipeline.model.registered import registered_asset
from ml_platform.pipeline.model.serving import serving_asset
from ml_platform.pipeline.model.trained import trained_asset
from ml_platform.pipeline.model.training_set import training_set_asset
from ml_platform.specs import ModelSpec

_BUILDERS = (features_asset, training_set_asset, trained_asset, evaluation_asset,
             registered_asset, production_asset, serving_asset)


def model_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    """Every asset of `spec`'s chain, from features to serving, and its predictions if the
    spec asks for them."""
    chain = Chain(spec)
    optional = [predictions_asset] if spec.batch_inference.enabled else []
    return [build(chain) for build in (*_BUILDERS, *optional)]


def pipeline_job(spec: ModelSpec) -> UnresolvedAssetJobDefinition:
    """`<model>_pipeline`: every asset from raw data to serving for one model, and its
    predictions (scored after `production` moved, so none is stale after a run)."""
    selection = dg.AssetSelection.assets(model_key(spec.name, "serving")).upstream()
    if spec.batch_inference.enabled:
        selection = selection | dg.AssetSelection.assets(model_key(spec.name, "predictions"))
    return dg.define_asset_job(
        names.pipeline_job(spec.name),
        selection=selection,
        description=f"{spec.description} Land-to-serving pipeline of {spec.name}.",
    )
