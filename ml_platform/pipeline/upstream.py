"""Which upstream record a stage reads: the one its own run produced, never the globally newest.

Two runs of one model at once (a backfill beside a sensor run, two people in the UI) each
materialize their own features, training set and candidate; a stage that read "the latest
materialization" could take the other run's. So a stage reads, in order:

1. the materialization of the upstream asset made by its own run, or by the run it
   re-executes (a re-execution from failure does not repeat the steps that succeeded);
2. otherwise (a run that does not materialize the upstream stage: `demo --retrain`, a
   selection in the UI), the newest materialization made before its run was created. Every
   step of the run computes the same answer, so the choice is pinned for the whole run: a
   materialization landing mid-run cannot change it.

The stage records where its input came from (`upstream_metadata`), so the UI shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dagster as dg

from ml_platform.records import RecordError, StageRecord

R = TypeVar("R", bound=StageRecord)


@dataclass(frozen=True)
class Upstream(Generic[R]):
    record: R
    run_id: str
    """The Dagster run that materialized it."""
    pinned: bool
    """True: read from before this run started (the run did not materialize it)."""


def all_materializations(instance: dg.DagsterInstance, key: dg.AssetKey
                         ) -> Iterator[dg.EventLogRecord]:
    """Every materialization of `key`, newest first, a page at a time (the event log caps a
    page at 10,000)."""
    cursor = None
    while True:
        page = instance.fetch_materializations(key, limit=10_000, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def _materialization_of_run(instance: dg.DagsterInstance, run_id: str,
                            key: dg.AssetKey) -> dg.EventLogRecord | None:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, ascending=False).records
    return next((r for r in records if r.asset_key == key), None)


def _own(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dg.EventLogRecord | None:
    """`key`'s materialization in this run or in the runs it re-executes."""
    instance, run = context.instance, context.run
    while run is not None:
        found = _materialization_of_run(instance, run.run_id, key)
        if found is not None:
            return found
        run = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    return None


def _pinned(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dg.EventLogRecord | None:
    """The newest materialization of `key` made before this run was created."""
    instance = context.instance
    record = instance.get_run_record_by_id(context.run_id)
    created = record.create_timestamp.timestamp() if record is not None else None
    page = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, before_timestamp=created), limit=1)
    return page.records[0] if page.records else None


def upstream(context: dg.AssetExecutionContext, key: dg.AssetKey, kind: type[R]) -> Upstream[R]:
    """The record of `key` this step must read (see the module docstring); fails, naming the
    asset, when there is none."""
    own = _own(context, key)
    event = own or _pinned(context, key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{key.to_user_string()} has never been materialized: materialize it "
                         "first", allow_retries=False)
    try:
        record = kind.from_metadata(event.asset_materialization.metadata)
    except RecordError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    return Upstream(record, event.run_id, pinned=own is None)


def upstream_metadata(*inputs: tuple[str, Upstream[Any]]) -> dict[str, Any]:
    """`<stage>_from_run`: which run's output each named input was (for people, in the UI)."""
    return {f"{name}_from_run": f"{up.run_id}{' (pinned)' if up.pinned else ''}"
            for name, up in inputs}
