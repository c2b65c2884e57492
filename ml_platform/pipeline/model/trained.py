"""`<model>/trained`: the model trained on the training set, logged to one MLflow run.

An unchanged training set and code version reuse the finished MLflow run (no retraining);
a retried step resumes its unfinished run from the last checkpoint; otherwise a new run is
created and the training runs on the profile's compute backend.
"""


from typing import Any

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError  # the training process died

from ml_platform import names, settings
from ml_platform.compute.request import TrainingRequest
from ml_platform.compute.trainer import Trainer, training_env
from ml_platform.names import Tag, Usage
from ml_platform.pipeline.code_version import training_code_version
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.retries import MLFLOW_RETRY, fail_fast
from ml_platform.pipeline.run_worker import record_run_worker
from ml_platform.pipeline.upstream import Upstream, upstream, upstream_metadata
from ml_platform.records import TrainedRecord, TrainingSetRecord
from ml_platform.storage.interfaces import LakeStore
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import actor


def compact_partitions(keys: list[str]) -> str:
    """`first..last (n)`: partition lists for tags, which have a length limit."""
    if not keys:
        return ""
    ordered = sorted(keys)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}..{ordered[-1]} ({len(ordered)})"


class TrainConfig(dg.Config):
    force: bool = False
    """Retrain even if a finished MLflow run exists for this training set and code version."""


def _identity(chain: Chain, ts: TrainingSetRecord, code_version: str) -> dict[str, str]:
    """The tags that make two trainings the same: model, training set and code."""
    return {Tag.MODEL: chain.name, Tag.TRAINING_SET_HASH: ts.training_set_hash,
            Tag.CODE_VERSION: code_version}


def _start_or_resume(context: dg.AssetExecutionContext, chain: Chain, mlflow: MlflowTracker,
                     identity: dict[str, str], ts: TrainingSetRecord) -> str:
    """The MLflow run this attempt trains in: the unfinished run of an earlier attempt of the
    same Dagster run (a retry resumes its checkpoint), else a new one."""
    attempt = {**identity, Tag.DAGSTER_ROOT_RUN_ID: context.run.root_run_id or context.run_id}
    run_id = mlflow.find_unfinished_run(chain.name, attempt)
    if run_id:
        context.log.info(f"resuming MLflow run {run_id} from its last checkpoint")
        return run_id
    dagster_url = mlflow.dagster_run_url(context.run_id)
    days = compact_partitions(ts.partitions)
    return mlflow.create_run(chain.name, f"{chain.name}-{context.run_id[:8]}", {
        **attempt,
        Tag.DESCRIPTION: (f"{chain.spec.description}\n\nTrained by Dagster run "
                          f"[{context.run_id[:8]}]({dagster_url}) (asset "
                          f"`{chain.key('trained').to_user_string()}`) on {days or 'no days'}, "
                          f"training set `{ts.training_set_hash[:16]}`."),
        Tag.SOURCE_NAME: f"dagster:{chain.key('trained').to_user_string()}",
        Tag.SOURCE_TYPE: "JOB",
        Tag.USER: actor(),
        Tag.DAGSTER_RUN_ID: context.run_id,
        Tag.DAGSTER_RUN_URL: dagster_url,
        Tag.DAGSTER_ASSET_KEY: chain.key("trained").to_user_string(),
        Tag.DAGSTER_PARTITIONS: days,
        Tag.FEATURES_HASH: ts.features_hash,
    })


def _train(context: dg.AssetExecutionContext, chain: Chain, ts: TrainingSetRecord,
           run_id: str, lake: LakeStore, mlflow: MlflowTracker, trainer: Trainer) -> dict[str, Any]:
    """Run the training of `run_id` on the compute backend; what its rank 0 reported."""
    mirror = names.checkpoints_lake_key(chain.name, run_id)
    request = TrainingRequest.for_spec(
        chain.spec, training_set_uri=lake.uri(ts.lake_key), mlflow_run_id=run_id,
        checkpoint_dir=str(settings.home() / "checkpoints" / chain.name / run_id),
        # a retry on a fresh disk (a new pod) resumes from the mirror; a local lake is on the
        # disk the local training already checkpoints to
        checkpoint_mirror=lake.uri(mirror) if lake.is_shared else "",
        training_set_hash=ts.training_set_hash, partitions=ts.partitions,
    )
    return trainer.train(context, request, env=training_env(mlflow.uri), code_store=lake)


def gpu_utilization_check(summary: dict[str, Any], threshold: float,
                          reused_run: str | None = None) -> dg.AssetCheckResult:
    """Warns when the training's mean GPU utilisation stayed under `threshold` percent: the
    GPUs mostly waited (for data, or because the request is bigger than the model needs)."""
    def result(passed: bool, description: str) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(check_name=names.GPU_UTILIZATION_CHECK, passed=passed,
                                   severity=dg.AssetCheckSeverity.WARN, description=description)

    if reused_run is not None:
        return result(True, f"reused MLflow run {reused_run}: nothing trained")
    util = summary.get(Usage.GPU_UTILIZATION)
    if not isinstance(util, int | float):
        return result(True, f"{Usage.NO_GPU}: the training ran on CPUs only")
    gpus = int(summary.get(Usage.GPU_COUNT, 0))
    if util < threshold:
        return result(False, f"mean GPU utilisation {util:.1f}% over {gpus} GPU(s) stayed under "
                             f"{threshold:g}%: the usual sign of a data-loading bottleneck or of "
                             "an oversized request (fewer or smaller GPUs, or feed them faster)")
    return result(True, f"mean GPU utilisation {util:.1f}% over {gpus} GPU(s) "
                        f"(warns under {threshold:g}%)")


def trained_asset(chain: Chain) -> dg.AssetsDefinition:
    code_version = training_code_version(chain.spec)
    threshold = chain.spec.compute.min_gpu_utilization

    @dg.asset(
        key=chain.key("trained"), deps=[chain.key("training_set")], kinds={"pytorch", "mlflow"},
        code_version=code_version, retry_policy=MLFLOW_RETRY, pool=names.TRAINING_POOL,
        tags={names.RunTag.GPU: str(chain.spec.compute.gpu)},
        check_specs=[dg.AssetCheckSpec(
            names.GPU_UTILIZATION_CHECK, asset=chain.key("trained"),
            description=f"The training's mean GPU utilisation is at least {threshold:g}% "
                        "(warns otherwise: a data-loading bottleneck or an oversized request); "
                        "passes on CPU trainings.",
        )],
        **chain.group,
    )
    def trained(context: dg.AssetExecutionContext, config: TrainConfig, lake: LakeStore,
                mlflow: MlflowTracker, trainer: Trainer) -> dg.MaterializeResult:
        """Torch model trained on the training set, logged to one MLflow run."""
        record_run_worker(context)
        with fail_fast(mlflow, retry_on=(DagsterPipesExecutionError,)):
            ts: Upstream[TrainingSetRecord] = upstream(context, chain.key("training_set"),
                                                       TrainingSetRecord)
            identity = _identity(chain, ts.record, code_version)
            reusable = None if config.force else mlflow.find_run(chain.name, identity)
            if reusable is not None:
                context.log.info(f"reusing MLflow run {reusable.info.run_id}: same training set and code")
                run_id, model_uri = reusable.info.run_id, reusable.data.tags[Tag.MODEL_URI]
                summary: dict[str, Any] = {k: v for k, v in reusable.data.metrics.items()
                                           if k.startswith("test_")}
            else:
                run_id = _start_or_resume(context, chain, mlflow, identity, ts.record)
                summary = _train(context, chain, ts.record, run_id, lake, mlflow, trainer)
                model_uri = summary.pop("model_uri")
            record = TrainedRecord(mlflow_run_id=run_id, model_uri=model_uri,
                                   training_set_hash=ts.record.training_set_hash,
                                   code_version=code_version, reused_run=reusable is not None)
            return dg.MaterializeResult(metadata={
                **record.to_metadata(),
                "mlflow_run_url": dg.MetadataValue.url(mlflow.run_url(run_id)),
                **upstream_metadata(("training_set", ts)),
                **{k: v for k, v in summary.items()
                   if isinstance(v, int | float) or k.startswith(Usage.PREFIX)
                   or k in (Tag.CODE_PACKAGE, Tag.CODE_SOURCE)},
            }, check_results=[gpu_utilization_check(
                summary, threshold, reused_run=run_id if reusable is not None else None)])

    return trained
