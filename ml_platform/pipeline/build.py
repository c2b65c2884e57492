"""Build the whole code location from model specs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import dagster as dg

from ml_platform.pipeline.automation import (
    alert_on_run_failure,
    daily_schedule,
    freshness_checks,
    freshness_sensor,
)
from ml_platform.pipeline.datasets import dataset_assets
from ml_platform.pipeline.executor import in_process_executor
from ml_platform.pipeline.model import model_assets, pipeline_job
from ml_platform.pipeline.registry_drift import registry_drift_sensor
from ml_platform.pipeline.resources import resources_for
from ml_platform.pipeline.sensors import landing_sensor, retrain_job
from ml_platform.specs import DatasetSpec, ModelSpec, load_specs


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


def build_definitions(specs: Sequence[ModelSpec] | None = None, *,
                      profile: str | None = None) -> dg.Definitions:
    """Assets, checks, jobs and resources for `specs` (default: the shipped specs) in `profile`
    (default: `ML_PLATFORM_PROFILE`)."""
    specs = list(specs) if specs is not None else load_specs()
    datasets = list(datasets_of(specs).values())
    assets: list[dg.AssetsDefinition] = []
    with warnings.catch_warnings():
        # Dagster flags its beta parameters (`backfill_policy`) each time an asset is defined,
        # in every process that loads the code location: chosen on purpose, said here once.
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        for ds in datasets:
            assets += dataset_assets(ds)
        for spec in specs:
            assets += model_assets(spec)
    checks = freshness_checks(specs, datasets)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[*(pipeline_job(spec) for spec in specs), *(retrain_job(ds) for ds in datasets)],
        sensors=[*(landing_sensor(ds) for ds in datasets), freshness_sensor(checks),
                 *(registry_drift_sensor(spec) for spec in specs), alert_on_run_failure],
        schedules=[daily_schedule(ds) for ds in datasets],
        resources=resources_for(profile, specs),
        # Every step but training is light; training runs in its own process (local) or its own
        # GPU pod (k8s: PipesK8sClient from the run pod), so a process or a pod per step would
        # only add start-up time per step. Both profiles execute in process.
        executor=in_process_executor,
    )
