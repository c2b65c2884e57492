"""Dagster asset keys of the platform's assets, from the names in `ml_platform.names`."""

from __future__ import annotations

import dagster as dg

from ml_platform import names


def model_key(model: str, stage: str) -> dg.AssetKey:
    """`<model>/<stage>`, e.g. `listing_price/trained`."""
    return dg.AssetKey(names.model_asset_path(model, stage))


def raw_key(dataset: str) -> dg.AssetKey:
    """`<dataset>/raw`: landed days copied into the lake."""
    return dg.AssetKey(names.dataset_asset_path(dataset, "raw"))


def validated_key(dataset: str) -> dg.AssetKey:
    """`<dataset>/validated`: days that passed every blocking check."""
    return dg.AssetKey(names.dataset_asset_path(dataset, "validated"))
