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
from ml_platform.pipeline.day_state import day_states
from ml_platform.pipeline.keys import raw_key, validated_key
from ml_platform.pipeline.partitions import day_ranges, landed
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
    retries: dict[str, list[float]] = field(default_factory=dict)
    """Days whose run failed: `[attempts so far, not before (epoch seconds)]`."""

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
                        cursor.last_arrival, list(cursor.reported), dict(cursor.retries))
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


RETRY_FIRST_DELAY_S = 60.0


def plan_retries(retries: dict[str, list[float]], failed: list[str], now: float,
                 max_delay_s: float) -> tuple[list[str], dict[str, list[float]]]:
    """Which of the `failed` days (ingested by a run that failed) to request again now, and the
    retry state to keep: a day is retried at once, then after 1, 2, 4, ... minutes, at most
    `max_delay_s` apart, so a persistent failure does not spin. Days no longer failed are
    forgotten."""
    kept, now_due = {}, []
    for day in failed:
        attempts, not_before = retries.get(day, [0.0, 0.0])
        if now >= not_before:
            now_due.append(day)
            delay = min(RETRY_FIRST_DELAY_S * 2 ** attempts, max_delay_s)
            attempts, not_before = attempts + 1, now + delay
        kept[day] = [attempts, not_before]
    return now_due, kept


def retrain_job(ds: DatasetSpec):  # -> UnresolvedAssetJobDefinition (not exported by dagster)
    """`<dataset>_retrain`: validate days of `ds` and retrain every model downstream of them."""
    return dg.define_asset_job(
        names.retrain_job(ds.name),
        selection=dg.AssetSelection.assets(raw_key(ds.name), validated_key(ds.name)).downstream(),
        description=f"Validate landed days of {ds.name}; retrain, gate and promote its models.",
    )


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags for the partition range `first`..`last`."""
    return {RunTag.PARTITION_RANGE_START: first, RunTag.PARTITION_RANGE_END: last}


def run_requests(days: list[str], run_key: str, trigger: str) -> list[dg.RunRequest]:
    """One run request per range of consecutive `days`: a day that never landed is never in a
    run, so it stays a missing partition."""
    return [
        dg.RunRequest(
            run_key=f"{run_key}:{first}..{last}",
            tags={**range_tags(first, last), RunTag.TRIGGER: trigger,
                  RunTag.DAYS: ",".join(d for d in days if first <= d <= last)[:4000]},
        )
        for first, last in day_ranges(days)
    ]


def landing_sensor(ds: DatasetSpec) -> dg.SensorDefinition:
    """The sensor watching `ds`'s landing zone (a local folder or S3, per the profile)."""
    @dg.sensor(
        name=names.landing_sensor(ds.name),
        job_name=names.retrain_job(ds.name),
        minimum_interval_seconds=ds.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"New files in the {ds.name} landing zone: register, validate, retrain "
                    f"(one run per burst, after {ds.debounce_seconds:g}s without new files). "
                    f"Days whose run failed are taken up again, at most "
                    f"{ds.retry_max_hours:g}h apart.",
    )
    def _sensor(context: dg.SensorEvaluationContext, landing: LandingStore) -> dg.SensorResult:
        listing = landed(landing, ds)
        now = time.time()
        plan = plan_tick(LandingCursor.parse(context.cursor), listing.mtimes, now,
                         ds.debounce_seconds)
        ignored = listing.newly_ignored(plan.cursor.reported)
        for entry in ignored:
            context.log.warning(f"{ds.name}: {entry} (in the landing zone)")
        plan.cursor.reported = sorted({*plan.cursor.reported, *(i.key for i in ignored)})
        states = {s.day: s for s in day_states(context.instance, ds.name, listing.mtimes)}
        failed = [s.day for s in states.values() if s.state == "due" and s.run_id]
        retry, plan.cursor.retries = plan_retries(plan.cursor.retries, failed, now,
                                                  ds.retry_max_hours * 3600)
        # Never ingested and not waiting out the debounce: a file held as early whose day has
        # come, or one written before the watermark (copied in with its old time).
        pending = set(plan.cursor.pending)  # a set: thousands of days are looked up in it
        unseen = [d for d, s in states.items()
                  if s.state == "due" and not s.run_id and d not in pending]
        # Only days still due: days `ml-platform demo` or `ingest` already took to the end (or
        # that are in flight or rejected) are not ingested again.
        run_days = sorted(d for d in {*plan.run_days, *retry, *unseen}
                          if d in states and states[d].state == "due")
        trigger = "landing_sensor" if set(run_days) - set(retry) else "retry"
        key = f"{ds.name}:{plan.cursor.watermark}" + (f":retry-{now:.0f}" if retry else "")
        return dg.SensorResult(
            run_requests=run_requests(run_days, key, trigger) if run_days else [],
            cursor=plan.cursor.dump(),
        )

    return _sensor
