"""Automation besides the landing sensors: a daily fallback schedule per dataset, freshness
checks the daemon evaluates, and a run-failure sensor that alerts."""

import warnings
from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from ml_platform import names
from ml_platform.names import RunTag
from ml_platform.pipeline.keys import model_key, raw_key, validated_key
from ml_platform.pipeline.notifications import Notifier
from ml_platform.specs import DatasetSpec, ModelSpec

FALLBACK_CRON = "0 6 * * *"


def daily_schedule(ds: DatasetSpec) -> dg.ScheduleDefinition:
    """Retrain on the newest landed day at the dataset's `schedule_cron` (UTC; default every
    morning at 06:00, in case no sensor did): with unchanged data and code the training is
    reused and nothing new is registered. The previous-day completeness check still gates a
    model that asks for it."""

    @dg.schedule(name=names.daily_schedule(ds.name), cron_schedule=ds.schedule_cron or FALLBACK_CRON,
                 job_name=names.retrain_job(ds.name),
                 default_status=dg.DefaultScheduleStatus.RUNNING, execution_timezone="UTC")
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        days = context.instance.get_materialized_partitions(raw_key(ds.name))
        if not days:
            return dg.SkipReason(f"no landed days of {ds.name} yet")
        return dg.RunRequest(partition_key=max(days), tags={RunTag.TRIGGER: "schedule"})

    return _schedule


def freshness_checks(specs: Sequence[ModelSpec], datasets: Sequence[DatasetSpec]
                     ) -> list[dg.AssetChecksDefinition]:
    """Last-update checks on raw and validated data and on each production model: they fail
    (and the UI shows the asset as stale) when nothing new arrived within the fail window."""
    checks: list[dg.AssetChecksDefinition] = []
    # Superseded by FreshnessPolicy (which the assets carry too), but only these checks put a
    # pass/fail with a reason next to the asset that the tests and the CLI can read.
    warnings.filterwarnings("ignore", category=dg.SupersessionWarning, module=__name__)
    # One call per fail window, not per asset: each call builds a Dagster op, and a thousand
    # models made the checks a seventh of the code location's load time (docs/benchmarks.md).
    by_window: dict[float, list[dg.AssetKey]] = {}
    for ds in datasets:
        by_window.setdefault(ds.freshness.fail_hours, []).extend(
            [raw_key(ds.name), validated_key(ds.name)])
    for spec in specs:
        by_window.setdefault(spec.freshness.fail_hours, []).append(
            model_key(spec.name, "production"))
    for hours, keys in by_window.items():
        checks += [_named(c, f"freshness_within_{hours:g}h") for c in
                   dg.build_last_update_freshness_checks(assets=keys,
                                                         lower_bound_delta=timedelta(hours=hours))]
    return checks


def _named(checks: dg.AssetChecksDefinition, name: str) -> dg.AssetChecksDefinition:
    """`checks` with its step named `name`: Dagster's factory names it `freshness_check_<hash>`,
    which tells nothing in a run's step list. (No public API renames a check's op.)"""
    node = checks.node_def.with_replaced_properties(name=name)
    with warnings.catch_warnings():  # the copied `execution_type` is a beta parameter
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.AssetChecksDefinition(**{**checks.get_attributes_dict(), "node_def": node})


# The freshness windows are hours long: a check looked at every 10 minutes turns overdue in time,
# and the sensor's lines (one per check and tick) do not fill the log of `ml-platform dev`.
FRESHNESS_INTERVAL_S = 600


def freshness_sensor(checks: Sequence[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    return dg.build_sensor_for_freshness_checks(
        freshness_checks=checks, default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=FRESHNESS_INTERVAL_S,
    )


@dg.run_failure_sensor(name=names.FAILURE_SENSOR, default_status=dg.DefaultSensorStatus.RUNNING,
                       monitor_all_code_locations=False)
def alert_on_run_failure(context: dg.RunFailureSensorContext, notifier: Notifier) -> None:
    """Every failed run: logged, and posted to the notifier's webhook when it has one."""
    run = context.dagster_run
    notifier.notify(
        f"ml_platform run failed: {run.job_name}",
        {"run_id": run.run_id, "job": run.job_name, "tags": dict(run.tags),
         "error": context.failure_event.message},
    )
