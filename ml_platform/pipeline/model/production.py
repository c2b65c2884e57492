"""`<model>/production`: the version behind alias `production`, moved only when every gate
passes, by compare-and-set against the champion the evaluation saw."""


from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG  # not exported

from ml_platform import names
from ml_platform.names import Tag
from ml_platform.pipeline.datasets import freshness_policy
from ml_platform.pipeline.keys import model_key
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.retries import MLFLOW_RETRY, fail_fast
from ml_platform.pipeline.upstream import upstream
from ml_platform.records import EvaluationRecord, PromotionRecord, RegisteredRecord
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import PromotionConflict, move_alias


def production_data_version(version: str) -> dg.DataVersion:
    """The data version of a `production` materialization: the version it points at. A move
    changes it, so Dagster shows what was computed from the old version (`predictions`) as
    stale; a move back to the same version does not."""
    return dg.DataVersion(f"v{version}")


def production_event(tracker: MlflowTracker, record: PromotionRecord,
                     description: str) -> dg.AssetMaterialization:
    """A move of `production` made outside a run (the CLI, the registry-drift sensor), with
    the data version a run's materialization would carry."""
    return dg.AssetMaterialization(
        asset_key=model_key(record.model, "production"),
        metadata=production_metadata(tracker, record), description=description,
        tags={DATA_VERSION_TAG: production_data_version(record.version).value})


def production_metadata(tracker: MlflowTracker, record: PromotionRecord) -> dict[str, Any]:
    """Metadata of a `production` materialization, from the pipeline or the CLI."""
    mv = tracker.client().get_model_version(record.model, record.version)
    return {
        **record.to_metadata(),
        "model_uri": f"models:/{record.model}/{record.version}",
        "mlflow_run_id": mv.run_id,
        "registry_url": dg.MetadataValue.url(tracker.model_version_url(record.model, record.version)),
        **{k: v for k, v in record.metrics.items() if isinstance(v, int | float)},
    }


def _promote(context: dg.AssetExecutionContext, chain: Chain, mlflow: MlflowTracker,
             candidate: RegisteredRecord, verdict: EvaluationRecord) -> PromotionRecord | None:
    """Move `production` to the candidate if its gates passed; None when nothing moved."""
    if verdict.mlflow_run_id != candidate.mlflow_run_id:
        raise dg.Failure("the evaluation is of another candidate than the registered one: "
                         "materialize evaluation and registered together", allow_retries=False)
    current = mlflow.alias_version(chain.name, names.PRODUCTION_ALIAS)
    if current == candidate.version:
        context.log.info(f"{chain.name} v{candidate.version} is already in production")
        return None
    if not verdict.gates_passed:
        mlflow.client().set_model_version_tag(chain.name, candidate.version, Tag.PROMOTION_STATUS,
                                              f"rejected: {verdict.gates}")
        context.log.warning(f"{chain.name} v{candidate.version} stays `candidate`: {verdict.gates}")
        return None
    try:
        return move_alias(
            mlflow, chain.name, candidate.version, expected_current=verdict.champion_version or None,
            kind="promotion", reason=verdict.gates, triggered_by="dagster",
            metrics=verdict.candidate_metrics, dagster_run_id=context.run_id,
        )
    except PromotionConflict as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc


def production_asset(chain: Chain) -> dg.AssetsDefinition:
    fresh = chain.spec.freshness

    @dg.asset(
        key=chain.key("production"), deps=[chain.key("registered")], kinds={"mlflow"},
        output_required=False, retry_policy=MLFLOW_RETRY,
        freshness_policy=freshness_policy(fresh.warn_hours, fresh.fail_hours), **chain.group,
    )
    def production(context: dg.AssetExecutionContext,
                   mlflow: MlflowTracker) -> Iterator[dg.MaterializeResult]:
        """The model version behind alias `production`, moved only when every gate passes."""
        with fail_fast(mlflow):
            candidate = upstream(context, chain.key("registered"), RegisteredRecord)
            verdict = upstream(context, chain.key("evaluation"), EvaluationRecord)
            moved = _promote(context, chain, mlflow, candidate.record, verdict.record)
            if moved is not None:  # no materialization when production stays where it was
                yield dg.MaterializeResult(metadata=production_metadata(mlflow, moved),
                                           data_version=production_data_version(moved.version))

    return production
