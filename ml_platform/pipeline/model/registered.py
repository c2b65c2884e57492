"""`<model>/registered`: the candidate as an MLflow model version, aliased `candidate`."""


import dagster as dg

from ml_platform import names
from ml_platform.names import Tag
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.retries import MLFLOW_RETRY, fail_fast
from ml_platform.pipeline.upstream import upstream, upstream_metadata
from ml_platform.records import EvaluationRecord, RegisteredRecord
from ml_platform.tracking.mlflow_resource import MlflowTracker


def description(model: str, version: str, verdict: EvaluationRecord, tags: dict[str, str],
                run_url: str) -> str:
    """The model version's Markdown description: where it comes from and how it was judged."""
    run_id = tags.get(Tag.DAGSTER_RUN_ID, "")
    run = f"[{run_id[:8]}]({tags[Tag.DAGSTER_RUN_URL]})" if Tag.DAGSTER_RUN_URL in tags else run_id[:8]
    champion = verdict.champion_version
    lines = [
        f"**{model} v{version}**, trained by Dagster run {run} on the days "
        f"{tags.get(Tag.DAGSTER_PARTITIONS, '(unknown)')}.",
        "",
        f"Gates: **{'passed' if verdict.gates_passed else 'failed'}**: {verdict.gates}",
        "",
        f"| test metric | v{version} | {f'champion v{champion}' if champion else 'no champion'} |",
        "| --- | --- | --- |",
        *(f"| {name} | {value:.4g} | "
          f"{'' if name not in verdict.champion_metrics else format(verdict.champion_metrics[name], '.4g')} |"
          for name, value in sorted(verdict.candidate_metrics.items())),
        "",
        f"MLflow run: [{verdict.mlflow_run_id[:8]}]({run_url}) · training set "
        f"`{tags.get(Tag.TRAINING_SET_HASH, '')[:16]}` · code version "
        f"`{tags.get(Tag.CODE_VERSION, '')}`",
    ]
    return "\n".join(lines)


def registered_asset(chain: Chain) -> dg.AssetsDefinition:
    @dg.asset(key=chain.key("registered"), deps=[chain.key("evaluation")], kinds={"mlflow"},
              retry_policy=MLFLOW_RETRY, **chain.group)
    def registered(context: dg.AssetExecutionContext,
                   mlflow: MlflowTracker) -> dg.MaterializeResult:
        """MLflow model version of the candidate, aliased `candidate`."""
        with fail_fast(mlflow):
            verdict = upstream(context, chain.key("evaluation"), EvaluationRecord)
            run_id = verdict.record.mlflow_run_id
            run = mlflow.client().get_run(run_id)
            tags = {k: v for k, v in run.data.tags.items() if k.startswith(Tag.LINKED_PREFIXES)}
            tags.update({Tag.GATES: verdict.record.gates,
                         Tag.GATES_PASSED: str(verdict.record.gates_passed).lower()})
            mv = mlflow.register(chain.name, verdict.record.model_uri, run_id, tags)
            mlflow.set_alias(chain.name, names.CANDIDATE_ALIAS, mv.version)
            mlflow.client().update_model_version(chain.name, mv.version, description=description(
                chain.name, str(mv.version), verdict.record, tags, mlflow.run_url(run_id)))
            record = RegisteredRecord(version=str(mv.version), model_uri=f"models:/{chain.name}/{mv.version}",
                                      mlflow_run_id=run_id, gates=verdict.record.gates,
                                      gates_passed=verdict.record.gates_passed)
            return dg.MaterializeResult(metadata={
                **record.to_metadata(),
                "registry_url": dg.MetadataValue.url(mlflow.model_version_url(chain.name, record.version)),
                "mlflow_run_url": dg.MetadataValue.url(mlflow.run_url(run_id)),
                **upstream_metadata(("evaluation", verdict)),
            })

    return registered
