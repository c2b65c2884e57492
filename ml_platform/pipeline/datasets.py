"""The assets of one landed dataset: `<dataset>/raw` and `<dataset>/validated`, partitioned
by day, with the validation checks as blocking asset checks."""


import datetime as dt
import hashlib
import io
from datetime import timedelta

import dagster as dg
import pyarrow.parquet as pq

from ml_platform import names
from ml_platform.ml.validation import (
    CHECK_DESCRIPTIONS,
    CHECK_NAMES,
    WARN_CHECKS,
    CheckOutcome,
    normalise_dates,
    validate,
)
from ml_platform.names import raw_lake_key, validated_lake_key
from ml_platform.pipeline.keys import raw_key, validated_key
from ml_platform.pipeline.partitions import day_partitions
from ml_platform.pipeline.raw_versions import (
    SOURCE_ATTR,
    landed_of_run,
    latest_landed,
    prune,
    versions_in_use,
)
from ml_platform.pipeline.retries import STORAGE_RETRY, fail_fast
from ml_platform.pipeline.run_worker import record_run_worker
from ml_platform.specs import DatasetSpec
from ml_platform.storage.day_files import LandingError
from ml_platform.storage.interfaces import LakeStore, LandingStore


def freshness_policy(hours_warn: float, hours_fail: float) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=hours_fail), warn_window=timedelta(hours=hours_warn)
    )


class Unreadable(ValueError):
    """A landed file that is not a readable Parquet file (empty, truncated, foreign)."""


def _parquet_rows(data: bytes, source: str) -> int:
    try:
        return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for truncated/foreign files
        raise Unreadable(f"{source} is not a readable Parquet file: "
                         f"{' '.join(str(exc).split()) or type(exc).__name__}") from exc


def _combine(name: str, by_day: dict[str, list[CheckOutcome]], *,
             blocks: bool) -> dg.AssetCheckResult:
    """One check result over every day of the run, naming each failing day. A failure blocks
    what follows in the run (ERROR) only when `blocks`: no day of the run was stored. When
    some were, the rejected days are left out of the lake and the others go on (WARN)."""
    outcomes = {day: next(o for o in found if o.name == name) for day, found in by_day.items()}
    failed = {day: o for day, o in outcomes.items() if not o.passed}
    if failed:
        # each description starts with its day
        text = "; ".join(o.description for _, o in sorted(failed.items()))
    else:
        text = next(iter(outcomes.values())).description if len(outcomes) == 1 else (
            f"passed on all {len(outcomes)} days")
    error = name not in WARN_CHECKS and blocks
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        description=text,
        metadata={"failed_days": dg.MetadataValue.json(
            {day: {"description": o.description, **o.metadata} for day, o in failed.items()}
        ), "days_checked": len(outcomes)},
    )


def _unreadable_outcomes(day: str, reason: str) -> list[CheckOutcome]:
    """A day whose file could not be read fails the schema check with the reason."""
    return [CheckOutcome(name, name != "schema", f"{day}: {reason}" if name == "schema" else
                         f"{day}: not checked (unreadable)")
            for name in CHECK_NAMES]


def previous_day_check(ds: DatasetSpec, copied: list[str], lake: LakeStore,
                       landing: LandingStore) -> dg.AssetCheckResult:
    """Whether the calendar day before the newest of `copied` (the days of `ds` ever copied
    into the lake, oldest first) passed validation; if not, a description naming the day and
    its shortfall (rows landed against the manifest; none when it never landed)."""
    day = (dt.date.fromisoformat(copied[-1]) - dt.timedelta(days=1)).isoformat()
    if day < copied[0]:
        return dg.AssetCheckResult(check_name=names.PREVIOUS_DAY_CHECK, passed=True,
                                   description="no previous day yet")
    if lake.exists(validated_lake_key(ds.name, day)):
        return dg.AssetCheckResult(check_name=names.PREVIOUS_DAY_CHECK, passed=True,
                                   description=f"{day} is complete and validated")
    expected = int((landing.manifest(ds.name, day) or {}).get("expected_rows", ds.rows_per_day))
    try:
        rows = _parquet_rows(landing.read_bytes(ds.name, day), landing.path(ds.name, day))
    except (LandingError, Unreadable):
        rows = 0  # never landed, withdrawn or unreadable
    return dg.AssetCheckResult(
        check_name=names.PREVIOUS_DAY_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
        description=f"previous day {ds.name} {day} is not complete: {rows} of {expected} "
                    f"expected rows landed and validated, short by {max(expected - rows, 0)}",
        metadata={"day": day, "rows": rows, "expected_rows": expected},
    )


def dataset_assets(ds: DatasetSpec) -> list[dg.AssetsDefinition]:
    """`raw` and `validated` for dataset `ds`."""
    partitions = day_partitions(ds)
    common = dict(
        partitions_def=partitions,
        # A backfill of N days becomes ceil(N/10) partition-range runs, submitted together; the
        # run queue (dagster.yaml) runs them in parallel within its limit. The CLI and sensors
        # pass explicit ranges, which run as one run whatever their length.
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=10),
        group_name=ds.name,
        retry_policy=STORAGE_RETRY,
    )

    kept = (f"the newest {ds.raw_versions_kept} version(s) of each day, and every version a "
            "registered model was trained on" if ds.raw_versions_kept else "every version")

    @dg.asset(
        key=raw_key(ds.name),
        description=f"Landed files, one per day, copied byte for byte into the lake under their "
                    f"sha256 (kept: {kept}). An unreadable file is recorded with the reason and "
                    "left out; the other days of the run go on.",
        kinds={"parquet"},
        freshness_policy=freshness_policy(ds.freshness.warn_hours, ds.freshness.fail_hours),
        **common,
    )
    def raw(context: dg.AssetExecutionContext, landing: LandingStore,
            lake: LakeStore) -> dg.MaterializeResult:
        # (the asset's description says what it does: it is built from the spec's retention)
        record_run_worker(context)
        with fail_fast():
            files, unreadable, removed = {}, {}, []
            in_use = versions_in_use(context.instance) if ds.raw_versions_kept else set()
            for day in context.partition_keys:
                source = str(landing.path(ds.name, day))
                try:
                    data = landing.read_bytes(ds.name, day)
                    rows = _parquet_rows(data, source)
                except (LandingError, Unreadable) as exc:
                    unreadable[day] = str(exc)
                    context.log.error(f"{ds.name} {day}: {exc}")
                    continue
                sha = hashlib.sha256(data).hexdigest()
                key = raw_lake_key(ds.name, day, sha)
                if not lake.exists(key):  # content-addressed: the same bytes are kept once
                    lake.write_bytes(key, data)
                files[day] = {"file": source, "rows": rows, "sha256": sha, "bytes": len(data),
                              "lake_key": key}
                if ds.raw_versions_kept:
                    removed += prune(lake, ds.name, day, ds.raw_versions_kept, in_use | {sha})
            return dg.MaterializeResult(metadata={
                "landed_files": dg.MetadataValue.json(files),
                "unreadable_days": dg.MetadataValue.json(unreadable),
                "rows": sum(f["rows"] for f in files.values()),
                "days": len(files),
                **({"versions_removed": dg.MetadataValue.json(removed)} if removed else {}),
            })

    @dg.asset(
        key=validated_key(ds.name),
        deps=[raw.key],
        kinds={"parquet"},
        freshness_policy=freshness_policy(ds.freshness.warn_hours, ds.freshness.fail_hours),
        check_specs=[
            dg.AssetCheckSpec(name, asset=validated_key(ds.name), blocking=name not in WARN_CHECKS,
                              description=CHECK_DESCRIPTIONS[name])
            for name in CHECK_NAMES
        ],
        **common,
    )
    def validated(context: dg.AssetExecutionContext, landing: LandingStore,
                  lake: LakeStore) -> dg.MaterializeResult:
        """Landed days that passed every data-quality check; failing days are never stored,
        so a bad file can't replace a good day already in the lake."""
        record_run_worker(context)
        with fail_fast():
            copied, unreadable = landed_of_run(context.instance, context.run_id, ds.name)
            by_day: dict[str, list[CheckOutcome]] = {}
            stored, rejected = [], []
            for day in context.partition_keys:
                landed = copied.get(day) or (
                    None if day in unreadable else latest_landed(context.instance, ds.name, day))
                if landed is None or "lake_key" not in landed:
                    reason = unreadable.get(day) or "not copied into the lake: materialize raw first"
                    by_day[day] = _unreadable_outcomes(day, reason)
                    unreadable[day] = reason
                    rejected.append(day)
                    continue
                frame = normalise_dates(lake.read_parquet(landed["lake_key"]), ds)
                manifest = landing.manifest(ds.name, day) or {}
                expected = int(manifest.get("expected_rows", ds.rows_per_day))
                outcomes = validate(frame, ds, day=dt.date.fromisoformat(day),
                                    expected_rows=expected)
                by_day[day] = outcomes
                if not any(o.blocks for o in outcomes):
                    table = frame[list(ds.columns)]
                    table.attrs = {SOURCE_ATTR: landed["sha256"]}  # kept in the Parquet file
                    lake.write_parquet(validated_lake_key(ds.name, day), table)
                    stored.append(day)
                else:
                    rejected.append(day)
                    failed = [f"{o.name}: {o.description}" for o in outcomes if o.blocks]
                    context.log.error(f"{ds.name} ({landing.path(ds.name, day)}) failed "
                                      "validation, not stored: " + "; ".join(failed))
            return dg.MaterializeResult(
                metadata={"stored_days": len(stored),
                          "rejected_days": dg.MetadataValue.json(rejected),
                          "rejections": dg.MetadataValue.json({
                              day: [o.description for o in by_day[day] if o.blocks]
                              or [unreadable.get(day, "")] for day in rejected})},
                check_results=[_combine(name, by_day, blocks=not stored) for name in CHECK_NAMES],
            )

    return [raw, validated]
