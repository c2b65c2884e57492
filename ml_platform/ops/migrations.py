"""Bringing a home made by an earlier release up to date, once, when a command opens it."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from ml_platform import names
from ml_platform.ops.errors import UsageError
from ml_platform.specs import DatasetSpec


def migrate_day_partitions(instance: dg.DagsterInstance, datasets: Iterable[DatasetSpec]) -> list[str]:
    """Homes made before days were daily partitions registered one dynamic partition per
    landed file (`<dataset>_days`). Their materializations are keyed by the same `YYYY-MM-DD`,
    so they carry over to the daily partitions as they are; the dynamic partitions are deleted.
    A day before the spec's `start_date` would be lost: refused, naming the setting to change.
    Returns the datasets migrated."""
    migrated = []
    for ds in datasets:
        name = names.legacy_day_partitions(ds.name)
        old = sorted(instance.get_dynamic_partitions(name))
        if not old:
            continue
        if old[0] < ds.start_date.isoformat():
            raise UsageError(
                f"this Dagster home has {ds.name} days from {old[0]}, before the spec's "
                f"dataset.start_date {ds.start_date}: set start_date: {old[0]} (or earlier) "
                f"in the spec of {ds.name}, then run the command again")
        for day in old:
            instance.delete_dynamic_partition(name, day)
        migrated.append(ds.name)
    return migrated
