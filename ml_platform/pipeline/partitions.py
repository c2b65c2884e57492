"""Partitions: one dynamic partition per landed day, registered when a file is seen."""

from __future__ import annotations

import dagster as dg

from ml_platform import names


def day_partitions(dataset: str) -> dg.DynamicPartitionsDefinition:
    """Partitions of `dataset`, keyed `YYYY-MM-DD`, one per landed file."""
    return dg.DynamicPartitionsDefinition(name=names.day_partitions(dataset))
