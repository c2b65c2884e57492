"""The state of each landed day of a dataset, read from the Dagster instance: what the landing
sensor, `ml-platform ingest` and `ml-platform status` agree on.

A day is

- `due`: landed and never copied, landed again since it was copied, or copied by a run that
  failed or was killed (its run ended without finishing the day's work): the next sensor tick
  or `ingest` takes it up;
- `in_flight`: copied by a run that is still running, or in the range of a run of the
  dataset's retrain job that is queued or running;
- `rejected`: the run that copied it rejected it (unreadable, or a blocking check failed; the
  reason is kept): done until the file is landed again;
- `done`: copied and validated by a run that succeeded, so every model downstream trained on
  it (or reused a training that includes it).

A day whose file was deleted from the landing zone is withdrawn: it is no longer listed, so
it is never due.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import dagster as dg

from ml_platform import names
from ml_platform.names import RunTag
from ml_platform.pipeline.keys import raw_key, validated_key
from ml_platform.pipeline.upstream import all_materializations

State = Literal["due", "in_flight", "rejected", "done"]
_FINISHED_BADLY = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_IN_FLIGHT = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
              dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
              dg.DagsterRunStatus.CANCELING}


@dataclass(frozen=True)
class DayState:
    day: str
    state: State
    run_id: str = ""
    """The run that last copied the day ("" when never copied)."""
    reason: str = ""
    """Why the day is due or rejected."""


def _latest_by_day(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, dg.EventLogRecord]:
    latest: dict[str, dg.EventLogRecord] = {}
    for record in all_materializations(instance, key):  # newest first
        if record.partition_key and record.partition_key not in latest:
            latest[record.partition_key] = record
    return latest


def _metadata(record: dg.EventLogRecord, name: str) -> object:
    mat = record.asset_materialization
    value = mat.metadata.get(name) if mat is not None else None
    return getattr(value, "value", value)


def day_states(instance: dg.DagsterInstance, dataset: str,
               landed: Mapping[str, float]) -> list[DayState]:
    """The state of each day in `landed` (`{day: time the file was last written}`)."""
    copied = _latest_by_day(instance, raw_key(dataset))
    checked = _latest_by_day(instance, validated_key(dataset))
    statuses: dict[str, dg.DagsterRunStatus | None] = {}

    def status(run_id: str) -> dg.DagsterRunStatus | None:
        """The outcome of the run and of its re-executions (run retries): success if any
        succeeded, in flight if any still runs, else the run's own status."""
        if run_id not in statuses:
            group = instance.get_run_group(run_id)
            found = {r.status for r in group[1]} if group else set()
            if dg.DagsterRunStatus.SUCCESS in found:
                statuses[run_id] = dg.DagsterRunStatus.SUCCESS
            elif found & _IN_FLIGHT:
                statuses[run_id] = dg.DagsterRunStatus.STARTED
            else:
                statuses[run_id] = dg.DagsterRunStatus.FAILURE if found else None
        return statuses[run_id]

    out = []
    starting = _runs_not_yet_copying(instance, dataset)
    for day, mtime in sorted(landed.items()):
        copy = copied.get(day)
        if copy is None:
            run_id = next((r for r, (first, last) in starting.items() if first <= day <= last), "")
            out.append(DayState(day, "in_flight", run_id) if run_id else
                       DayState(day, "due", reason="landed, not yet ingested"))
            continue
        if mtime > copy.timestamp:
            out.append(DayState(day, "due", copy.run_id, "landed again since it was ingested"))
            continue
        # the validation of this copy: made after it (in its run, or in a re-execution of it)
        check = checked.get(day)
        rejections = _metadata(check, "rejections") if check and check.timestamp >= copy.timestamp \
            else None
        if isinstance(rejections, dict) and day in rejections:
            out.append(DayState(day, "rejected", copy.run_id, "; ".join(rejections[day])))
            continue
        run_status = status(copy.run_id)
        if run_status in _IN_FLIGHT:
            out.append(DayState(day, "in_flight", copy.run_id))
        elif run_status in _FINISHED_BADLY or run_status is None:
            out.append(DayState(day, "due", copy.run_id,
                                f"its run {copy.run_id[:8]} did not finish ({run_status or 'gone'})"))
        else:
            out.append(DayState(day, "done", copy.run_id))
    return out


def _runs_not_yet_copying(instance: dg.DagsterInstance, dataset: str) -> dict[str, tuple[str, str]]:
    """Queued or running runs of `dataset`'s retrain job: `{run_id: (first day, last day)}`.
    Their days count as in flight before `raw` has copied them, so a sensor tick or an
    `ingest` in that window does not request them again."""
    runs = instance.get_runs(dg.RunsFilter(job_name=names.retrain_job(dataset),
                                           statuses=list(_IN_FLIGHT)))
    return {r.run_id: (r.tags[RunTag.PARTITION_RANGE_START], r.tags[RunTag.PARTITION_RANGE_END])
            for r in runs if RunTag.PARTITION_RANGE_START in r.tags
            and RunTag.PARTITION_RANGE_END in r.tags}


def due(states: Iterable[DayState]) -> list[str]:
    return [s.day for s in states if s.state == "due"]
