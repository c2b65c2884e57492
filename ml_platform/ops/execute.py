"""Running pipelines without a daemon: what `ml-platform demo` and the tests do."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import dagster as dg

from ml_platform import names, settings
from ml_platform.names import RunTag
from ml_platform.ops.progress import StepProgress
from ml_platform.pipeline.day_state import day_states, due
from ml_platform.pipeline.keys import model_key
from ml_platform.pipeline.partitions import day_partitions
from ml_platform.pipeline.sensors import partition_range_tags
from ml_platform.specs import ModelSpec
from ml_platform.storage.interfaces import LandingStore


def prepare_dagster_home(profile: str | None = None) -> Path:
    """Point DAGSTER_HOME at the profile's instance folder (`settings.dagster_home`) and write
    the profile's instance configuration (shipped with the package) there unless it has one."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        target.write_text(settings.instance_config(profile or settings.profile()))
    os.environ[settings.DAGSTER_HOME_ENV] = str(home)
    return home


def register_landed_days(instance: dg.DagsterInstance, landing: LandingStore,
                         dataset: str) -> list[str]:
    """Add a partition for every landed day not yet registered; returns the new ones."""
    name = day_partitions(dataset).name
    known = set(instance.get_dynamic_partitions(name))
    new = [d for d in landing.days(dataset) if d not in known]
    if new:
        instance.add_dynamic_partitions(name, new)
    return new


RETRAIN_STAGES = names.RETRAIN_STAGES


def run_model_pipeline(defs: dg.Definitions, spec: ModelSpec, instance: dg.DagsterInstance,
                       *, force_retrain: bool = False, retrain_only: bool = False,
                       log_level: str = "INFO", progress: StepProgress | None = None
                       ) -> dg.ExecuteInProcessResult:
    """One run of `<model>_pipeline` in this process: every registered day through serving,
    or with `retrain_only` a forced new training on the current training set and what follows
    (the inner loop after a code change: upstream untouched).

    Never raises on step failure: callers read the result (failed checks, skipped steps).
    `progress`: print its steps there (and Dagster's log only if verbose).
    """
    days = sorted(instance.get_dynamic_partitions(day_partitions(spec.dataset.name).name))
    if not days:
        raise ValueError(f"no landed days of {spec.dataset.name}: run `ml-platform simulate` first")
    job = defs.resolve_job_def(names.pipeline_job(spec.name))
    trained = model_key(spec.name, "trained").to_python_identifier()
    tags = {RunTag.TRIGGER: "cli", **_process_tags()}
    if not retrain_only:
        tags |= {RunTag.PARTITION_RANGE_START: days[0], RunTag.PARTITION_RANGE_END: days[-1]}
    selection = [model_key(spec.name, s) for s in RETRAIN_STAGES] if retrain_only else None
    loggers: dict[str, Any] = {"console": {"config": {"log_level": log_level}}}
    if progress is not None:
        job, loggers = progress.attach(job, loggers, selection)
    return job.execute_in_process(
        instance=instance,
        tags=tags,
        asset_selection=selection,
        run_config={
            "ops": {trained: {"config": {"force": force_retrain or retrain_only}}},
            "loggers": loggers,
        },
        raise_on_error=False,
    )


def due_days(instance: dg.DagsterInstance, landing: LandingStore, dataset: str) -> list[str]:
    """Landed days never ingested, landed again since they were, or ingested by a run that
    failed or was killed (see `pipeline.day_state`)."""
    return due(day_states(instance, dataset, landing.listing(dataset)))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs a command of this machine started in process and left STARTED when
    it died (killed, out of memory): their days become due again. Returns their run ids. (The
    daemon's run monitoring does the same for the runs it launched.)"""
    host = socket.gethostname()
    dead = []
    records = instance.get_runs(dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
        tags={RunTag.HOST: host}))
    for run in records:
        pid = run.tags.get(RunTag.PID, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            instance.report_run_failed(run, f"the process that ran it ({host}:{pid}) is gone")
            # its claim on the `training` pool would otherwise hold the next training forever
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            dead.append(run.run_id)
    return dead


def _process_tags() -> dict[str, str]:
    """Tags naming this process, so a later command can tell whether its runs are orphans."""
    return {RunTag.HOST: socket.gethostname(), RunTag.PID: str(os.getpid())}


def ingest(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance,
           landing: LandingStore, progress: StepProgress | None = None) -> dict[str, Any]:
    """The landing sensor's work, once and synchronously: register landed days, validate the
    due ones and retrain, gate and promote every model downstream. Returns what happened.
    `progress`: print its steps there."""
    register_landed_days(instance, landing, dataset)
    repaired = fail_dead_runs(instance)
    states = day_states(instance, dataset, landing.listing(dataset))
    days = due(states)
    report: dict[str, Any] = {
        "dataset": dataset, "days": days, "run_id": None, "repaired_runs": repaired,
        "rejected_days": {s.day: s.reason for s in states if s.state == "rejected"},
        "ignored": [str(i) for i in landing.scan(dataset).ignored],
    }
    if not days:
        return {**report, "success": True, "note": "nothing new in the landing zone"}
    ordered = instance.get_dynamic_partitions(day_partitions(dataset).name)
    job = defs.resolve_job_def(names.retrain_job(dataset))
    loggers: dict[str, Any] = {"console": {"config": {"log_level": "WARNING"}}}
    if progress is not None:
        job, loggers = progress.attach(job, loggers)
    result = job.execute_in_process(
        instance=instance, raise_on_error=False,
        tags={**partition_range_tags(ordered, days), RunTag.TRIGGER: "ingest", **_process_tags()},
        run_config={"loggers": loggers},
    )
    materialized = sorted({e.asset_key.to_user_string()
                           for e in result.get_asset_materialization_events()})
    promoted = [
        {"model": e.asset_key.path[0],
         **{k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()
            if k in ("version", "previous_version", "reason")}}
        for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "production"
    ]
    return {
        **report,
        "run_id": result.run_id,
        "success": result.success,
        "materialized": materialized,
        "failed_checks": [
            {"asset": e.asset_key.to_user_string(), "check": e.check_name,
             "severity": e.severity.value, "description": e.description}
            for e in result.get_asset_check_evaluations() if not e.passed
        ],
        "failed_steps": [
            {"step": e.step_key, "error": e.step_failure_data.error.message.strip()}
            for e in result.all_events if e.is_step_failure and e.step_failure_data.error
        ],
        "promoted": promoted,
    }
