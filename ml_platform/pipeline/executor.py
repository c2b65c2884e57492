"""The executor of every job: Dagster's in-process executor, which first refuses a run that
cannot succeed for want of a setting, before any step starts, with a message naming the fix:

- a run materializing day-partitioned assets that names no day (`dagster job execute -j
  <model>_pipeline` has no partition option): it would fail in `<dataset>/raw` ("Cannot access
  partition_key for a non-partitioned run") and leave the chain red;
- a run that needs the MLflow server when none is configured: it would validate and build
  features, then fail at `trained`.

`execute_in_process` (the CLI's runs) uses Dagster's own executor: those runs always name
their days and their server. The check asks Dagster whether the run names a partition, so it
holds for any partitions definition.
"""

import json
from collections.abc import Iterator

import dagster as dg
from dagster._core.execution.context.system import PlanOrchestrationContext  # not exported
from dagster._core.system_config.objects import ResolvedRunConfig  # not exported

from ml_platform.names import RunTag
from ml_platform.tracking.mlflow_resource import MlflowTracker

MLFLOW_RESOURCE = "mlflow"


class RunRefused(Exception):
    """A run that cannot succeed as asked; the message says what to do."""


def missing_days_message(job_name: str, assets: list[str], first: str | None,
                         last: str | None) -> str:
    """What to do instead of running `job_name` on `assets` without a day."""
    what = f"{job_name}: {', '.join(assets)} are partitioned by day"
    if first is None or last is None:
        return (f"{what} and no day is known yet: land days (`ml-platform simulate`, or files in "
                "the landing zone), then run `ml-platform ingest`")
    tags = json.dumps({RunTag.PARTITION_RANGE_START: first, RunTag.PARTITION_RANGE_END: last})
    return (f"{what} and this run names no day: run `ml-platform ingest` (every day not yet "
            "ingested), or pick days in the UI (Materialize, then a day range), or name them: "
            f"`dagster job execute -j {job_name} ... --tags '{tags}'`")


def _refuse_without_days(context: PlanOrchestrationContext, job: dg.JobDefinition) -> None:
    run = context.dagster_run
    if run.is_partitioned:
        return
    layer = job.asset_layer
    selected = run.asset_selection or layer.executable_asset_keys
    partitioned = sorted((key for key in selected if layer.get(key).partitions_def is not None),
                         key=lambda k: k.to_user_string())
    if not partitioned:
        return
    first, last = _example_days(context.instance, partitioned[0],
                                layer.get(partitioned[0]).partitions_def)
    raise RunRefused(missing_days_message(
        run.job_name, [k.to_user_string() for k in partitioned], first, last))


def _example_days(instance: dg.DagsterInstance, key: dg.AssetKey,
                  partitions: dg.PartitionsDefinition | None) -> tuple[str | None, str | None]:
    """The first and last day `key` was materialized for, else its newest partition."""
    done = sorted(instance.get_materialized_partitions(key))
    if done:
        return done[0], done[-1]
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        newest = partitions.get_last_partition_key() if partitions is not None else None
    return newest, newest


def _refuse_without_tracking_server(context: PlanOrchestrationContext,
                                    job: dg.JobDefinition) -> None:
    if MLFLOW_RESOURCE not in job.get_required_resource_defs():
        return
    # the resource's configuration as the run will resolve it (the code location's values,
    # overridden by the run config's)
    config = ResolvedRunConfig.build(job, context.run_config).resources.get(MLFLOW_RESOURCE)
    try:
        _ = MlflowTracker(**(config.config if config and config.config else {})).uri
    except ValueError as exc:  # no tracking URI: the message names the setting
        raise RunRefused(f"{context.dagster_run.job_name}: {exc}") from None


class _CheckedExecutor(dg.Executor):
    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    @property
    def retries(self):  # -> RetryMode (not exported)
        return self._inner.retries

    @property
    def step_dependency_config(self):  # -> StepDependencyConfig (not exported)
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        job = plan_context.job.get_definition()
        _refuse_without_days(plan_context, job)
        _refuse_without_tracking_server(plan_context, job)
        yield from self._inner.execute(plan_context, execution_plan)


@dg.executor(name="in_process", config_schema=dg.in_process_executor.config_schema.as_field())
def in_process_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's in-process executor, refusing runs that name no day or no MLflow server."""
    return _CheckedExecutor(dg.in_process_executor.executor_creation_fn(init_context))
