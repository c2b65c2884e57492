"""Lineage: from a model alias back to the landed files it was trained on."""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_platform import names
from ml_platform.names import Tag
from ml_platform.ops.errors import NotFound
from ml_platform.ops.registry import require_version
from ml_platform.pipeline.keys import model_key, raw_key
from ml_platform.specs import ModelSpec
from ml_platform.tracking.mlflow_resource import MlflowTracker


def _materialization_metadata(instance: dg.DagsterInstance, key: dg.AssetKey,
                              match: dict[str, str], run_id: str = "",
                              limit: int = 200) -> dict[str, Any] | None:
    """Metadata of the materialization of `key` whose metadata contains `match`: the one made
    in Dagster run `run_id` if there is one (content hashes repeat across runs), else the newest."""
    found = []
    for record in instance.fetch_materializations(key, limit=limit).records:
        mat = record.asset_materialization
        if mat is None:
            continue
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        if all(str(meta.get(k)) == v for k, v in match.items()):
            found.append({**meta, "dagster_run_id": record.run_id, "timestamp": record.timestamp})
    return next((m for m in found if m["dagster_run_id"] == run_id), found[0] if found else None)


def _landed_files(instance: dg.DagsterInstance, dataset: str, partitions: list[str],
                  sources: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The landed file of each partition: the version with the sha256 in `sources` (what a
    training set was built from, recorded with it) or, without one, the latest landing, from
    `raw`'s materializations. `lake_key` is where the lake keeps those exact bytes."""
    if not partitions:
        return []
    sources = sources or {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_key(dataset), asset_partitions=partitions),
        limit=len(partitions) * 20,
    ).records
    files: dict[str, dict[str, Any]] = {}
    for record in records:  # newest first: the first match of a day is its latest landing
        day = record.partition_key
        landed = record.asset_materialization.metadata.get("landed_files")
        if day in files or landed is None or day not in landed.value:
            continue
        info = landed.value[day]
        if sources.get(day) and info.get("sha256") != sources[day]:
            continue  # another version of the day's file
        files[day] = {"partition": day, "file": info.get("file"), "sha256": info.get("sha256"),
                      "rows": info.get("rows"), "lake_key": info.get("lake_key"),
                      "materialized_at": record.timestamp, "dagster_run_id": record.run_id}
    for day, sha in sources.items():  # copied before this release recorded lake keys
        files.setdefault(day, {"partition": day, "file": None, "sha256": sha, "rows": None,
                               "lake_key": names.raw_lake_key(dataset, day, sha)})
    return [files[d] for d in sorted(files)]


def _features_runs(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str],
                   before: float | None) -> dict[str, str]:
    """`{day: the Dagster run that computed the day's feature table}` for the `partitions` of
    a training set made at `before`: each day's newest `features` materialization until then."""
    if not partitions:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions,
                              before_timestamp=before + 1e-3 if before else None),
        limit=len(partitions) * 20).records
    runs: dict[str, str] = {}
    for record in records:  # newest first
        if record.partition_key:
            runs.setdefault(record.partition_key, record.run_id)
    return dict(sorted(runs.items()))


def lineage(spec: ModelSpec, instance: dg.DagsterInstance, tracker: MlflowTracker,
            alias: str = names.PRODUCTION_ALIAS, version: str | None = None) -> dict[str, Any]:
    """alias (or version) → model version → MLflow run → Dagster run → training set →
    features → raw partitions and landed files."""
    name = spec.name
    if version is None:
        version = tracker.alias_version(name, alias)
        if version is None:
            aliases = sorted(tracker.client().get_registered_model(name).aliases) \
                if tracker.registered(name) else []
            raise NotFound(f"{name} has no version aliased {alias!r}; aliases: "
                           f"{', '.join(aliases) or 'none yet'}")
    else:
        require_version(tracker, name, version)
    client = tracker.client()
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    tags = run.data.tags
    dagster_run_id = tags.get(Tag.DAGSTER_RUN_ID, "")
    dagster_run = instance.get_run_by_id(dagster_run_id) if dagster_run_id else None
    ts_hash = tags.get(Tag.TRAINING_SET_HASH, "")
    training_set = _materialization_metadata(
        instance, model_key(name, "training_set"), {"training_set_hash": ts_hash},
        dagster_run_id) or {}
    partitions: list[str] = list(training_set.get("partitions", []))
    features_hash = tags.get(Tag.FEATURES_HASH, "")
    features_runs = _features_runs(instance, model_key(name, "features"), partitions,
                                   training_set.get("timestamp"))
    return {
        "model": name,
        "alias": alias,
        "version": version,
        "aliases": list(client.get_model_version(name, version).aliases),
        "model_uri": f"models:/{name}/{version}",
        "registry_url": tracker.model_version_url(name, version),
        "mlflow_run": {"id": mv.run_id, "url": tracker.run_url(mv.run_id),
                       "metrics": run.data.metrics},
        "dagster_run": {"id": dagster_run_id, "url": tracker.dagster_run_url(dagster_run_id),
                        "status": dagster_run.status.value if dagster_run else "unknown"},
        "code_version": tags.get(Tag.CODE_VERSION),
        "training_set": {"hash": ts_hash, "dagster_run_id": training_set.get("dagster_run_id"),
                         "materialized_at": training_set.get("timestamp")},
        "features": {"hash": features_hash,
                     "dagster_run_id": features_runs[max(features_runs)] if features_runs else None,
                     "dagster_run_ids": features_runs},
        "partitions": partitions,
        "raw_files": _landed_files(instance, spec.dataset.name, partitions,
                                   dict(training_set.get("sources") or {})),
    }


def trained_on(day: str, dataset: str, specs: list[ModelSpec], instance: dg.DagsterInstance,
               tracker: MlflowTracker) -> dict[str, Any]:
    """The reverse question: which model versions were trained on `dataset`'s `day`?"""
    client, versions = tracker.client(), []
    for spec in (s for s in specs if s.dataset.name == dataset):
        production = tracker.alias_version(spec.name, names.PRODUCTION_ALIAS)
        partitions_of: dict[str, list[str]] = {}
        for mv in client.search_model_versions(f"name = '{spec.name}'"):
            ts_hash = client.get_run(mv.run_id).data.tags.get(Tag.TRAINING_SET_HASH, "")
            if ts_hash not in partitions_of:
                meta = _materialization_metadata(
                    instance, model_key(spec.name, "training_set"), {"training_set_hash": ts_hash})
                partitions_of[ts_hash] = list((meta or {}).get("partitions", []))
            if day in partitions_of[ts_hash]:
                versions.append({"model": spec.name, "version": mv.version,
                                 "in_production": mv.version == production,
                                 "aliases": list(mv.aliases), "mlflow_run_id": mv.run_id})
    versions.sort(key=lambda v: (v["model"], int(v["version"])))
    return {"dataset": dataset, "partition": day,
            "landed_file": next(iter(_landed_files(instance, dataset, [day])), None),
            "model_versions": versions}


def prediction_lineage(spec: ModelSpec, instance: dg.DagsterInstance, tracker: MlflowTracker,
                       day: str) -> dict[str, Any]:
    """A prediction day → the model version that scored it → its MLflow run, Dagster run,
    training set and the days it was trained on (`lineage`), plus the production version now
    (a day scored by another one is stale)."""
    from ml_platform.ops.predictions import latest_predictions, require_predictions

    require_predictions(spec)
    scored = latest_predictions(instance, spec.name)
    if day not in scored:
        known = f"{min(scored)}..{max(scored)} ({len(scored)} days)" if scored else "none yet"
        raise NotFound(f"{spec.name} has no predictions for {day}; scored days: {known}")
    record, event = scored[day]
    production = tracker.alias_version(spec.name, names.PRODUCTION_ALIAS)
    return {
        "predictions": {
            "model": spec.name, "partition": day, "version": record.version,
            "model_uri": record.model_uri, "mlflow_run_id": record.mlflow_run_id,
            "rows": record.rows.get(day), "lake_key": record.lake_keys.get(day),
            "source_sha256": record.sources.get(day), "dagster_run_id": event.run_id,
            "dagster_run_url": tracker.dagster_run_url(event.run_id),
            "scored_at": event.timestamp, "production_version": production,
            "scored_by_production": record.version == production,
        },
        **lineage(spec, instance, tracker, version=record.version),
    }


def render_prediction(chain: dict[str, Any]) -> str:
    """`prediction_lineage` as indented text: the scored day, then the version's lineage."""
    p = chain["predictions"]
    now = ("production" if p["scored_by_production"] else
           f"stale: production is v{p['production_version'] or '-'}, re-score the day")
    return "\n".join([
        f"{p['model']}/predictions {p['partition']}: {p['rows']} rows  {p['lake_key']}  [{now}]",
        f"  scored by v{p['version']} in Dagster run {p['dagster_run_id']}  {p['dagster_run_url']}",
        *("  " + line for line in render(chain).splitlines()),
    ])


def _more_runs(runs: set[str]) -> str:
    return f", and {len(runs) - 1} more for older days" if len(runs) > 1 else ""


def render(chain: dict[str, Any]) -> str:
    """The lineage chain as indented text for a terminal."""
    parts = chain["partitions"]
    span = f"{parts[0]}..{parts[-1]} ({len(parts)} days)" if parts else "none recorded"
    lines = [
        f"{chain['model']} v{chain['version']} [{', '.join(chain['aliases']) or 'no alias'}]"
        f" ({chain['model_uri']})",
        f"  -> MLflow run {chain['mlflow_run']['id']}  {chain['mlflow_run']['url']}",
        f"  -> Dagster run {chain['dagster_run']['id']} [{chain['dagster_run']['status']}]"
        f"  {chain['dagster_run']['url']}",
        f"  -> code version {chain['code_version']}",
        f"  -> training set {chain['training_set']['hash'][:16]}"
        f"  (Dagster run {chain['training_set']['dagster_run_id']})",
        f"  -> features {chain['features']['hash'][:16]}"
        f"  (Dagster run {chain['features']['dagster_run_id']}"
        f"{_more_runs(set(chain['features'].get('dagster_run_ids', {}).values()))})",
        f"  -> raw partitions {span}",
    ]
    lines += [f"       {f['partition']}  {f['file']}  sha256 {(f['sha256'] or '?')[:12]}"
              f"  ({f['rows']} rows)" for f in chain["raw_files"][:3]]
    if len(chain["raw_files"]) > 3:
        lines.append(f"       ... {len(chain['raw_files']) - 3} more")
    return "\n".join(lines)
