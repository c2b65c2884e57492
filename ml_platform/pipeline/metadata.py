"""Reading what upstream assets recorded: the contract between thin assets is their metadata."""

from __future__ import annotations

from typing import Any

import dagster as dg


def latest_metadata(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dict[str, Any]:
    """Plain values of the latest materialization's metadata of `key`; fails naming the asset
    when it was never materialized."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{key.to_user_string()} has never been materialized: materialize it first",
                         allow_retries=False)
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def compact_partitions(keys: list[str]) -> str:
    """`first..last (n)`: partition lists for tags, which have a length limit."""
    if not keys:
        return ""
    ordered = sorted(keys)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}..{ordered[-1]} ({len(ordered)})"
