"""Every landed version of a day, kept: the lake holds each file `raw` copied under its
sha256 (`names.raw_lake_key`), so re-landing a day adds a version and never overwrites the
bytes an earlier model was trained on. `validated` tags the table it writes with the sha256
it came from; `features` and the training set record those per day, which is what lineage
reports.

Retention (`dataset.raw_versions_kept`) removes the oldest versions of a day beyond that
number, but never one that a registered model version was trained on.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_platform import names
from ml_platform.pipeline.keys import raw_key
from ml_platform.pipeline.upstream import all_materializations
from ml_platform.records import RecordError, RegisteredRecord, TrainedRecord, TrainingSetRecord
from ml_platform.storage.interfaces import LakeStore

#: The key, in a validated day's Parquet metadata (`DataFrame.attrs`), of the sha256 of the
#: landed file it was validated from.
SOURCE_ATTR = "ml_platform.source_sha256"


def landed_of_run(instance: dg.DagsterInstance, run_id: str, dataset: str
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """What `raw` recorded in run `run_id`: `({day: landed file}, {day: why unreadable})`;
    empty when the run did not copy the dataset."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        if record.asset_key == raw_key(dataset) and record.asset_materialization is not None:
            meta = record.asset_materialization.metadata
            return (dict(_value(meta.get("landed_files")) or {}),
                    dict(_value(meta.get("unreadable_days")) or {}))
    return {}, {}


def latest_landed(instance: dg.DagsterInstance, dataset: str, day: str) -> dict[str, Any] | None:
    """The newest copy `raw` made of `day` (for a `validated` run that did not copy it)."""
    page = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_key(dataset), asset_partitions=[day]), limit=1)
    for record in page.records:
        if record.asset_materialization is not None:
            files = _value(record.asset_materialization.metadata.get("landed_files")) or {}
            return files.get(day)
    return None


def _value(metadata_value: Any) -> Any:
    return getattr(metadata_value, "value", metadata_value)


def versions_in_use(instance: dg.DagsterInstance) -> set[str]:
    """The sha256 of every landed version a registered model version was trained on, from
    the `registered`, `trained` and `training_set` materializations of every model."""
    keys = instance.get_asset_keys()
    by_stage: dict[str, list[dict[str, Any]]] = {"registered": [], "trained": [], "training_set": []}
    for key in keys:
        if key.path[-1] in by_stage:
            by_stage[key.path[-1]] += [
                dict(r.asset_materialization.metadata) for r in all_materializations(instance, key)
                if r.asset_materialization is not None]

    def records(stage: str, kind: Any) -> list[Any]:
        out = []
        for meta in by_stage[stage]:
            try:
                out.append(kind.from_metadata(meta))
            except RecordError:
                continue  # written by an older release: nothing to protect by it
        return out

    registered_runs = {r.mlflow_run_id for r in records("registered", RegisteredRecord)}
    hashes = {t.training_set_hash for t in records("trained", TrainedRecord)
              if t.mlflow_run_id in registered_runs}
    return {sha for ts in records("training_set", TrainingSetRecord)
            if ts.training_set_hash in hashes for sha in ts.sources.values()}


def prune(lake: LakeStore, dataset: str, day: str, keep: int, in_use: set[str]) -> list[str]:
    """Remove the versions of `day` beyond the newest `keep`, except those `in_use`; returns
    the keys removed."""
    versions = list(lake.list_keys(names.raw_versions_prefix(dataset, day)))  # oldest first
    removed = []
    for key in versions[:-keep]:
        sha = key.rsplit("/", 1)[-1].removesuffix(".parquet")
        if sha not in in_use:
            lake.delete(key)
            removed.append(key)
    return removed
