"""`<model>/evaluation`: the candidate and the current champion scored on the same test split."""


import dagster as dg

from ml_platform import names
from ml_platform.ml.training_set import SPLIT_COLUMN
from ml_platform.pipeline.model.common import Chain, markdown_metrics
from ml_platform.pipeline.retries import MLFLOW_RETRY, fail_fast
from ml_platform.pipeline.upstream import upstream, upstream_metadata
from ml_platform.records import EvaluationRecord, TrainedRecord, TrainingSetRecord
from ml_platform.specs import PromotionSpec
from ml_platform.storage.interfaces import LakeStore
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.scoring import compare_with_champion


def gates_text(promotion: PromotionSpec) -> str:
    """What the promotion gates check, in words, for the UI."""
    text = "The candidate passes " + ", ".join(str(g) for g in promotion.gates)
    if promotion.not_worse_than_champion:
        direction = "higher" if promotion.higher_is_better else "lower"
        text += (f" and its {promotion.primary_metric} ({direction} is better) is not worse than "
                 f"the champion's by more than {promotion.champion_tolerance:g}")
    return text + ", on the same frozen test split."


def evaluation_asset(chain: Chain) -> dg.AssetsDefinition:
    spec = chain.spec
    key = chain.key("evaluation")

    @dg.asset(
        key=key, deps=[chain.key("trained")], kinds={"mlflow"}, retry_policy=MLFLOW_RETRY,
        check_specs=[dg.AssetCheckSpec(
            names.PROMOTION_GATES_CHECK, asset=key,
            description=gates_text(spec.promotion),
        )],
        **chain.group,
    )
    def evaluation(context: dg.AssetExecutionContext, lake: LakeStore,
                   mlflow: MlflowTracker) -> dg.MaterializeResult:
        """Holdout metrics of the candidate and the current champion on the same test split."""
        with fail_fast(mlflow):
            model = upstream(context, chain.key("trained"), TrainedRecord)
            ts = upstream(context, chain.key("training_set"), TrainingSetRecord)
            if ts.record.training_set_hash != model.record.training_set_hash:
                raise dg.Failure(
                    f"the candidate was trained on training set {model.record.training_set_hash[:16]}, "
                    f"not on {ts.record.training_set_hash[:16]}: materialize trained again",
                    allow_retries=False)
            test = lake.read_parquet(ts.record.lake_key)
            test = test[test[SPLIT_COLUMN] == "test"]
            champion_version = mlflow.alias_version(chain.name, names.PRODUCTION_ALIAS)
            cmp = compare_with_champion(spec, mlflow.uri, test, model.record.model_uri, champion_version)
            record = EvaluationRecord(
                mlflow_run_id=model.record.mlflow_run_id, model_uri=model.record.model_uri,
                champion_version=cmp.champion_version or "", gates_passed=cmp.report.passed,
                gates=cmp.report.summary(), candidate_metrics=cmp.candidate,
                champion_metrics=cmp.champion or {})
            champion_label = f"champion v{cmp.champion_version}" if cmp.champion_version else "champion"
            return dg.MaterializeResult(
                metadata={
                    **record.to_metadata(),
                    "comparison": dg.MetadataValue.md(markdown_metrics(
                        {"candidate": cmp.candidate, champion_label: cmp.champion})),
                    "test_rows": len(test),
                    **{f"candidate_{k}": v for k, v in cmp.candidate.items()},
                    **upstream_metadata(("trained", model), ("training_set", ts)),
                },
                check_results=[dg.AssetCheckResult(
                    check_name=names.PROMOTION_GATES_CHECK, passed=cmp.report.passed,
                    severity=dg.AssetCheckSeverity.WARN, description=cmp.report.summary(),
                    metadata={r.gate: dg.MetadataValue.text("pass" if r.passed else "FAIL")
                              for r in cmp.report.results},
                )],
            )

    return evaluation
