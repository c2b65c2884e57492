"""Partitions: one per calendar day of a dataset, from its spec's `start_date` to tomorrow
(UTC). A day that never landed is a missing partition; a file name that is not a day in that
window can never become one."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ml_platform.specs import DatasetSpec
from ml_platform.storage.day_files import Listing
from ml_platform.storage.interfaces import LandingStore

DAY_FORMAT = "%Y-%m-%d"
#: The partition of today ends tomorrow (offset 1); one more admits tomorrow's file, which a
#: producer ahead of UTC lands while it is still today here.
END_OFFSET = 2


def day_partitions(ds: DatasetSpec) -> dg.DailyPartitionsDefinition:
    """Partitions of `ds`, keyed `YYYY-MM-DD`."""
    return dg.DailyPartitionsDefinition(start_date=ds.start_date.isoformat(), fmt=DAY_FORMAT,
                                        end_offset=END_OFFSET, timezone="UTC")


def last_day(now: dt.datetime | None = None) -> str:
    """The newest day partition at `now`: tomorrow (UTC), as `END_OFFSET` makes it."""
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    return (today + dt.timedelta(days=END_OFFSET - 1)).isoformat()


def landed(landing: LandingStore, ds: DatasetSpec, now: dt.datetime | None = None) -> Listing:
    """The landed days of `ds` that are partitions; files dated outside them are listed as
    ignored, with the reason."""
    return landing.scan(ds.name).within(ds.start_date.isoformat(), last_day(now))


def day_ranges(days: list[str]) -> list[tuple[str, str]]:
    """Consecutive calendar days of `days` as `(first, last)` ranges, oldest first: one run
    per range, so that a run never spans (and materializes) a day that did not land."""
    ranges: list[tuple[str, str]] = []
    one_day = dt.timedelta(days=1)
    for day in sorted(set(days)):
        if ranges and dt.date.fromisoformat(day) - dt.date.fromisoformat(ranges[-1][1]) == one_day:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def missing_days(days: list[str]) -> list[str]:
    """The calendar days between the first and the newest of `days` that are not in it:
    partitions that never landed (shown as missing in the UI too)."""
    if not days:
        return []
    present = set(days)
    first, last = dt.date.fromisoformat(min(days)), dt.date.fromisoformat(max(days))
    every = ((first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1))
    return [d for d in every if d not in present]


def window_mapping(window_days: int | None) -> dg.PartitionMapping:
    """How a training set's window maps onto day partitions: the `window_days` calendar days
    ending with its newest day (a time-window mapping), or every day up to it without a
    window."""
    if window_days is None:
        return dg.TimeWindowPartitionMapping(start_offset=-100_000)  # from the first partition
    return dg.TimeWindowPartitionMapping(start_offset=-(window_days - 1))


def window(ds: DatasetSpec, window_days: int | None, newest: str) -> list[str]:
    """The day partitions of the training window that ends with day `newest`, oldest first
    (`window_mapping`; none before `ds.start_date`)."""
    partitions = day_partitions(ds)
    result = window_mapping(window_days).get_upstream_mapped_partitions_result_for_partitions(
        partitions.subset_with_partition_keys([newest]), partitions, partitions)
    return sorted(result.partitions_subset.get_partition_keys())
