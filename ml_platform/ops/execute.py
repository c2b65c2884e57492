"""Running pipelines without a daemon: what `ml-platform demo` and the tests do."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

from ml_platform import names, settings
from ml_platform.names import RunTag
from ml_platform.ops.progress import StepProgress
from ml_platform.pipeline.day_state import day_states, due
from ml_platform.pipeline.keys import model_key, raw_key, validated_key
from ml_platform.pipeline.model.production import MOVED
from ml_platform.pipeline.partitions import day_ranges, landed
from ml_platform.pipeline.sensors import range_tags
from ml_platform.specs import DatasetSpec, ModelSpec
from ml_platform.storage.interfaces import LandingStore
from ml_platform.tracking.home_server import process_start


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


RETRAIN_STAGES = names.RETRAIN_STAGES


def run_model_pipeline(defs: dg.Definitions, spec: ModelSpec, instance: dg.DagsterInstance,
                       landing: LandingStore, *, force_retrain: bool = False,
                       retrain_only: bool = False, log_level: str = "INFO",
                       progress: StepProgress | None = None) -> dg.ExecuteInProcessResult:
    """One run of `<model>_pipeline` in this process: every landed day through serving, or
    with `retrain_only` a forced new training on the current training set and what follows
    (the inner loop after a code change: upstream untouched). Landed days with gaps between
    them are copied, validated and featurized range by range first, so the training sees them
    all.

    Never raises on step failure: callers read the result (failed checks, skipped steps).
    `progress`: print its steps there (and Dagster's log only if verbose).
    """
    days = list(landed(landing, spec.dataset).days)
    if not days:
        raise ValueError(f"no landed days of {spec.dataset.name}: run `ml-platform simulate` first")
    job = defs.resolve_job_def(names.pipeline_job(spec.name))
    trained = model_key(spec.name, "trained").to_python_identifier()
    tags = {RunTag.TRIGGER: "cli", **_process_tags()}
    console = {"console": {"config": {"log_level": log_level}}}
    if retrain_only:
        selection = [model_key(spec.name, s) for s in RETRAIN_STAGES]
        run_job, loggers = _with_progress(job, console, progress, selection)
        return run_job.execute_in_process(
            instance=instance, tags=tags, raise_on_error=False, asset_selection=selection,
            run_config={"ops": {trained: {"config": {"force": True}}}, "loggers": loggers})
    *earlier, last = day_ranges(days)
    for first, end in earlier:
        selection = [raw_key(spec.dataset.name), validated_key(spec.dataset.name),
                     model_key(spec.name, "features")]
        run_job, loggers = _with_progress(job, console, progress, selection)
        run_job.execute_in_process(
            instance=instance, tags={**tags, **range_tags(first, end)}, raise_on_error=False,
            asset_selection=selection, run_config={"loggers": loggers})
    run_job, loggers = _with_progress(job, console, progress)
    return run_job.execute_in_process(
        instance=instance, tags={**tags, **range_tags(*last)}, raise_on_error=False,
        run_config={"ops": {trained: {"config": {"force": force_retrain}}}, "loggers": loggers})


def _with_progress(job: dg.JobDefinition, loggers: dict[str, Any], progress: StepProgress | None,
                   selection: list[dg.AssetKey] | None = None
                   ) -> tuple[dg.JobDefinition, dict[str, Any]]:
    """`job` and its run config's loggers, with `progress` attached when given."""
    return (job, loggers) if progress is None else progress.attach(job, loggers, selection)


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs of this machine left STARTED by a process that died (a command's
    own process, or a launched run's worker: killed, out of memory): their days become due
    again. Returns their run ids. (The daemon's run monitoring does the same for the runs it
    launched, `pipeline.run_worker`.)"""
    host = socket.gethostname()
    dead = []
    records = instance.get_runs(dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
        tags={RunTag.HOST: host}))
    for run in records:
        pid = run.tags.get(RunTag.PID, "")
        if pid.isdigit() and int(pid) != os.getpid() and process_start(int(pid)) is None:
            instance.report_run_failed(run, f"the process that ran it ({host}:{pid}) is gone")
            # its claim on the `training` pool would otherwise hold the next training forever
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            dead.append(run.run_id)
    return dead


def step_error(error: SerializableErrorInfo) -> str:
    """A failed step's error as people should read it first: for a step whose retries ran out,
    the last attempt's own error (which names, say, the tracking server) rather than Dagster's
    "Exceeded max_retries"."""
    while error.message.startswith("Exceeded max_retries") and error.cause is not None:
        error = error.cause
    return error.message.strip()


def _process_tags() -> dict[str, str]:
    """Tags naming this process, so a later command can tell whether its runs are orphans."""
    return {RunTag.HOST: socket.gethostname(), RunTag.PID: str(os.getpid())}


def ingest(defs: dg.Definitions, ds: DatasetSpec, instance: dg.DagsterInstance,
           landing: LandingStore, progress: StepProgress | None = None) -> dict[str, Any]:
    """The landing sensor's work, once and synchronously: validate the due days of `ds` and
    retrain, gate and promote every model downstream, one run per range of consecutive due
    days. Returns what happened. `progress`: print its steps there."""
    repaired = fail_dead_runs(instance)
    listing = landed(landing, ds)
    states = day_states(instance, ds.name, listing.mtimes)
    days = due(states)
    report: dict[str, Any] = {
        "dataset": ds.name, "days": days, "run_id": None, "run_ids": [],
        "repaired_runs": repaired,
        "in_flight": {s.day: s.run_id for s in states if s.state == "in_flight"},
        "rejected_days": {s.day: s.reason for s in states if s.state == "rejected"},
        "ignored": [str(i) for i in listing.ignored],
    }
    if not days:
        note = ("nothing new in the landing zone" if not report["in_flight"] else
                "nothing new: the due days are in flight in another run")
        return {**report, "success": True, "note": note}
    job, loggers = _with_progress(defs.resolve_job_def(names.retrain_job(ds.name)),
                                  {"console": {"config": {"log_level": "WARNING"}}}, progress)
    results = [
        job.execute_in_process(
            instance=instance, raise_on_error=False,
            tags={**range_tags(first, last), RunTag.TRIGGER: "ingest",
                  RunTag.DAYS: ",".join(d for d in days if first <= d <= last)[:4000],
                  **_process_tags()},
            run_config={"loggers": loggers},
        )
        for first, last in day_ranges(days)
    ]
    events = [e for r in results for e in r.get_asset_materialization_events()]
    promoted = [
        {"model": e.asset_key.path[0],
         **{k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()
            if k in ("version", "previous_version", "reason")}}
        for e in events if e.asset_key.path[-1] == "production"
        and getattr(e.materialization.metadata.get(MOVED), "value", True)
    ]
    return {
        **report,
        "run_id": results[-1].run_id,
        "run_ids": [r.run_id for r in results],
        "success": all(r.success for r in results),
        "materialized": sorted({e.asset_key.to_user_string() for e in events}),
        "failed_checks": [
            {"asset": e.asset_key.to_user_string(), "check": e.check_name,
             "severity": e.severity.value, "description": e.description}
            for r in results for e in r.get_asset_check_evaluations() if not e.passed
        ],
        "failed_steps": [
            {"step": e.step_key, "error": step_error(e.step_failure_data.error)}
            for r in results for e in r.all_events
            if e.is_step_failure and e.step_failure_data.error
        ],
        "promoted": promoted,
    }
