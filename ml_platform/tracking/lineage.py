"""Lineage: from a model alias back to the landed files it was trained on."""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_platform.pipeline.datasets import raw_key
from ml_platform.pipeline.models import model_key
from ml_platform.specs import ModelSpec
from ml_platform.tracking.mlflow_resource import MlflowTracker


def _materialization_metadata(instance: dg.DagsterInstance, key: dg.AssetKey,
                              match: dict[str, str], limit: int = 200) -> dict[str, Any] | None:
    """Metadata of the newest materialization of `key` whose metadata contains `match`."""
    records = instance.fetch_materializations(key, limit=limit).records
    for record in records:
        mat = record.asset_materialization
        if mat is None:
            continue
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        if all(str(meta.get(k)) == v for k, v in match.items()):
            return {**meta, "dagster_run_id": record.run_id, "timestamp": record.timestamp}
    return None


def lineage(spec: ModelSpec, instance: dg.DagsterInstance, tracker: MlflowTracker,
            alias: str = "production") -> dict[str, Any]:
    """production alias → model version → MLflow run → Dagster run → training set → raw files."""
    name = spec.name
    version = tracker.alias_version(name, alias)
    if version is None:
        raise LookupError(f"{name} has no version aliased {alias!r}")
    client = tracker.client()
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    tags = run.data.tags
    dagster_run_id = tags.get("dagster.run_id", "")
    dagster_run = instance.get_run_by_id(dagster_run_id) if dagster_run_id else None
    ts_hash = tags.get("ml_platform.training_set_hash", "")
    training_set = _materialization_metadata(
        instance, model_key(name, "training_set"), {"training_set_hash": ts_hash}) or {}
    partitions: list[str] = list(training_set.get("partitions", []))
    files = []
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_key(spec.dataset.name), asset_partitions=partitions),
        limit=max(len(partitions) * 4, 1),
    ).records if partitions else []
    seen = set()
    for record in records:  # newest first: the first record of a day is its latest landing
        day = record.partition_key
        landed = record.asset_materialization.metadata.get("landed_files")
        if day in seen or landed is None:
            continue
        seen.add(day)
        info = landed.value.get(day, {})
        files.append({"partition": day, "file": info.get("file"), "sha256": info.get("sha256"),
                      "rows": info.get("rows"), "materialized_at": record.timestamp})
    return {
        "model": name,
        "alias": alias,
        "version": version,
        "model_uri": f"models:/{name}/{version}",
        "registry_url": tracker.model_version_url(name, version),
        "mlflow_run": {"id": mv.run_id, "url": tracker.run_url(mv.run_id),
                       "metrics": run.data.metrics},
        "dagster_run": {"id": dagster_run_id, "url": tracker.dagster_run_url(dagster_run_id),
                        "status": dagster_run.status.value if dagster_run else "unknown"},
        "code_version": tags.get("ml_platform.code_version"),
        "training_set_hash": ts_hash,
        "features_hash": tags.get("ml_platform.features_hash"),
        "partitions": partitions,
        "raw_files": sorted(files, key=lambda f: f["partition"]),
    }


def render(chain: dict[str, Any]) -> str:
    """The lineage chain as indented text for a terminal."""
    parts = chain["partitions"]
    span = f"{parts[0]}..{parts[-1]} ({len(parts)} days)" if parts else "none recorded"
    lines = [
        f"{chain['model']}@{chain['alias']} -> v{chain['version']} ({chain['model_uri']})",
        f"  -> MLflow run {chain['mlflow_run']['id']}  {chain['mlflow_run']['url']}",
        f"  -> Dagster run {chain['dagster_run']['id']} [{chain['dagster_run']['status']}]"
        f"  {chain['dagster_run']['url']}",
        f"  -> code version {chain['code_version']}",
        f"  -> training set {chain['training_set_hash'][:16]}"
        f"  features {(chain['features_hash'] or '')[:16]}",
        f"  -> raw partitions {span}",
    ]
    lines += [f"       {f['partition']}  {f['file']}  ({f['rows']} rows)" for f in chain["raw_files"][:3]]
    if len(chain["raw_files"]) > 3:
        lines.append(f"       ... {len(chain['raw_files']) - 3} more")
    return "\n".join(lines)
