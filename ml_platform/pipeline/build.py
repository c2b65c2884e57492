"""Build the whole code location from model specs."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ml_platform.compute.local import LocalProcessTrainer
from ml_platform.pipeline.datasets import dataset_assets
from ml_platform.pipeline.models import model_assets, pipeline_job
from ml_platform.specs import DatasetSpec, ModelSpec, load_specs
from ml_platform.storage.lake import Lake
from ml_platform.storage.landing import LandingZone
from ml_platform.tracking.mlflow_resource import MlflowTracker


def datasets_of(specs: Sequence[ModelSpec]) -> dict[str, DatasetSpec]:
    """Each dataset once; models sharing a dataset must declare it identically."""
    found: dict[str, tuple[DatasetSpec, str]] = {}
    for spec in specs:
        ds = spec.dataset
        if ds.name in found and found[ds.name][0] != ds:
            raise ValueError(
                f"models {found[ds.name][1]!r} and {spec.name!r} declare dataset {ds.name!r} "
                "differently: make their `dataset` blocks identical"
            )
        found.setdefault(ds.name, (ds, spec.name))
    return {name: ds for name, (ds, _) in found.items()}


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources of the local profile; every one resolves paths and URLs when a run starts."""
    return {
        "landing": LandingZone(),
        "lake": Lake(),
        "mlflow": MlflowTracker(),
        "trainer": LocalProcessTrainer(),
    }


def build_definitions(specs: Sequence[ModelSpec] | None = None) -> dg.Definitions:
    """Assets, checks, jobs and resources for `specs` (default: the shipped specs)."""
    specs = list(specs) if specs is not None else load_specs()
    assets: list[dg.AssetsDefinition] = []
    for ds in datasets_of(specs).values():
        assets += dataset_assets(ds)
    for spec in specs:
        assets += model_assets(spec)
    return dg.Definitions(
        assets=assets,
        jobs=[pipeline_job(spec) for spec in specs],
        resources=default_resources(),
        # Every step but training is light; training runs in its own process anyway, so a
        # process per step would only add ~1.8 s of start-up per step.
        executor=dg.in_process_executor,
    )
