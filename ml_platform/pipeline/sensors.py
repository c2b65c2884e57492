"""Landing-zone sensors: new files become partitions and, once a burst of arrivals has gone
quiet, one run that validates them and retrains every model on the dataset.

The cursor is a watermark (newest file time seen, plus the days seen at exactly that time) and
the days waiting for their run; it advances only with the tick's result, and every run request
carries a run key, so a restarted daemon neither misses nor repeats a file.
"""

import json
import time
from dataclasses import asdict, dataclass, field

import dagster as dg

from ml_platform import names
from ml_platform.names import RunTag
from ml_platform.pipeline.keys import raw_key, validated_key
from ml_platform.pipeline.partitions import day_partitions
from ml_platform.specs import DatasetSpec
from ml_platform.storage.interfaces import LandingStore


@dataclass
class LandingCursor:
    watermark: float = 0.0
    at_watermark: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    last_arrival: float = 0.0
    reported: list[str] = field(default_factory=list)
    """Landing-zone entries already reported as ignored (not a day file): reported once."""

    @classmethod
    def parse(cls, raw: str | None) -> "LandingCursor":
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class TickPlan:
    new_days: list[str]
    run_days: list[str]  # empty: nothing to run yet (no pending days, or still debouncing)
    cursor: LandingCursor


def plan_tick(cursor: LandingCursor, listing: dict[str, float], now: float,
              debounce_s: float) -> TickPlan:
    """What one tick does, as a pure function of the cursor, the listing and the clock."""
    seen_at_mark = set(cursor.at_watermark)
    new = sorted(d for d, t in listing.items()
                 if t > cursor.watermark or (t == cursor.watermark and d not in seen_at_mark))
    nxt = LandingCursor(cursor.watermark, list(cursor.at_watermark), list(cursor.pending),
                        cursor.last_arrival, list(cursor.reported))
    if new:
        mark = max(listing[d] for d in new)
        if mark > nxt.watermark:
            nxt.watermark, nxt.at_watermark = mark, []
        nxt.at_watermark = sorted(set(nxt.at_watermark) | {d for d in new if listing[d] == mark})
        nxt.pending = sorted(set(nxt.pending) | set(new))
        nxt.last_arrival = now
    if nxt.pending and now - nxt.last_arrival >= debounce_s:
        run_days, nxt.pending = nxt.pending, []
        return TickPlan(new, run_days, nxt)
    return TickPlan(new, [], nxt)


def retrain_job(ds: DatasetSpec):  # -> UnresolvedAssetJobDefinition (not exported by dagster)
    """`<dataset>_retrain`: validate days of `ds` and retrain every model downstream of them."""
    return dg.define_asset_job(
        names.retrain_job(ds.name),
        selection=dg.AssetSelection.assets(raw_key(ds.name), validated_key(ds.name)).downstream(),
        description=f"Validate landed days of {ds.name}; retrain, gate and promote its models.",
    )


def partition_range_tags(ordered: list[str], days: list[str]) -> dict[str, str]:
    """Run tags for the range covering `days`, in the partitions' own order."""
    position = {d: i for i, d in enumerate(ordered)}
    days = sorted(days, key=lambda d: position.get(d, len(position)))
    return {RunTag.PARTITION_RANGE_START: days[0], RunTag.PARTITION_RANGE_END: days[-1]}


def landing_sensor(ds: DatasetSpec) -> dg.SensorDefinition:
    """The sensor watching `ds`'s landing zone (a local folder or S3, per the profile)."""
    partitions = day_partitions(ds.name)

    @dg.sensor(
        name=names.landing_sensor(ds.name),
        job_name=names.retrain_job(ds.name),
        minimum_interval_seconds=ds.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"New files in the {ds.name} landing zone: register, validate, retrain "
                    f"(one run per burst, after {ds.debounce_seconds:g}s without new files).",
    )
    def _sensor(context: dg.SensorEvaluationContext, landing: LandingStore) -> dg.SensorResult:
        listing = landing.scan(ds.name)
        plan = plan_tick(LandingCursor.parse(context.cursor), listing.mtimes, time.time(),
                         ds.debounce_seconds)
        ignored = listing.newly_ignored(plan.cursor.reported)
        for entry in ignored:
            context.log.warning(f"{ds.name}: {entry} (in the landing zone)")
        plan.cursor.reported = sorted({*plan.cursor.reported, *(i.key for i in ignored)})
        known = context.instance.get_dynamic_partitions(partitions.name)
        to_add = [d for d in plan.new_days if d not in set(known)]
        requests = []
        if plan.run_days:
            ordered = [*known, *to_add]
            requests.append(dg.RunRequest(
                run_key=f"{ds.name}:{plan.cursor.watermark}:{','.join(plan.run_days)}",
                tags={**partition_range_tags(ordered, plan.run_days),
                      RunTag.TRIGGER: "landing_sensor",
                      RunTag.DAYS: ",".join(plan.run_days)[:4000]},
            ))
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[partitions.build_add_request(to_add)] if to_add else [],
            cursor=plan.cursor.dump(),
        )

    return _sensor
