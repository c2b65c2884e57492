"""`<model>/production`: the version behind alias `production`, moved only when every gate
passes, by compare-and-set against the champion the evaluation saw.

Every decision materializes it: a move with its `PromotionRecord` (the history), a kept alias
with the decision (`moved: False`) and the same data version as before, so the steps after it
run and nothing computed from the production version goes stale. Its freshness is therefore
"production was re-decided on recent data", not "production moved recently": a champion that
keeps beating its challengers stays fresh."""


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

MOVED = "moved"
"""Metadata of a `production` materialization: whether it moved the alias (a promotion, a
rollback, an external move) or kept it (a rejected or already-promoted candidate)."""


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
        MOVED: True,
        "model_uri": f"models:/{record.model}/{record.version}",
        "mlflow_run_id": mv.run_id,
        "registry_url": dg.MetadataValue.url(tracker.model_version_url(record.model, record.version)),
        **{k: v for k, v in record.metrics.items() if isinstance(v, int | float)},
    }


def kept_metadata(tracker: MlflowTracker, model: str, version: str, candidate: str,
                  decision: str) -> dict[str, Any]:
    """Metadata of a `production` materialization that did not move the alias: the run's
    decision about its candidate, and the version still in production. Not a move: the
    history (`PromotionRecord`s) leaves it out."""
    return {
        MOVED: False, "version": version, "candidate_version": candidate, "decision": decision,
        "model_uri": f"models:/{model}/{version}",
        "registry_url": dg.MetadataValue.url(tracker.model_version_url(model, version)),
    }


def _promote(context: dg.AssetExecutionContext, chain: Chain, mlflow: MlflowTracker,
             candidate: RegisteredRecord, verdict: EvaluationRecord) -> PromotionRecord | str:
    """Move `production` to the candidate if its gates passed; else why it stayed."""
    if verdict.mlflow_run_id != candidate.mlflow_run_id:
        raise dg.Failure("the evaluation is of another candidate than the registered one: "
                         "materialize evaluation and registered together", allow_retries=False)
    current = mlflow.alias_version(chain.name, names.PRODUCTION_ALIAS)
    if current == candidate.version:
        context.log.info(f"{chain.name} v{candidate.version} is already in production")
        return f"v{candidate.version} is already in production"
    if not verdict.gates_passed:
        mlflow.client().set_model_version_tag(chain.name, candidate.version, Tag.PROMOTION_STATUS,
                                              f"rejected: {verdict.gates}")
        context.log.warning(f"{chain.name} v{candidate.version} stays `candidate`: {verdict.gates}")
        return f"v{candidate.version} rejected: {verdict.gates}"
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
        """The model version behind alias `production`, moved only when every gate passes;
        materialized by every decision (moved or kept), so what follows it (serving, the
        day's predictions) runs, and a backfill's page counts it done."""
        with fail_fast(mlflow):
            candidate = upstream(context, chain.key("registered"), RegisteredRecord)
            verdict = upstream(context, chain.key("evaluation"), EvaluationRecord)
            moved = _promote(context, chain, mlflow, candidate.record, verdict.record)
            if isinstance(moved, PromotionRecord):
                yield dg.MaterializeResult(metadata=production_metadata(mlflow, moved),
                                           data_version=production_data_version(moved.version))
                return
            current = mlflow.alias_version(chain.name, names.PRODUCTION_ALIAS)
            if current is not None:  # the same data version: nothing downstream goes stale
                yield dg.MaterializeResult(
                    metadata=kept_metadata(mlflow, chain.name, current,
                                           candidate.record.version, moved),
                    data_version=production_data_version(current))
            # no production version at all (a first candidate rejected): nothing to serve

    return production
