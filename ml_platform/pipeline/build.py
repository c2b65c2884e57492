"""Build the whole code location from model specs."""

from __future__ import annotations

import os
from collections.abc import Sequence

import dagster as dg

from ml_platform import settings
from ml_platform.compute.local import LocalProcessTrainer
from ml_platform.pipeline.automation import (
    alert_on_run_failure,
    daily_schedule,
    freshness_checks,
    freshness_sensor,
)
from ml_platform.pipeline.datasets import dataset_assets
from ml_platform.pipeline.models import model_assets, pipeline_job
from ml_platform.pipeline.notifications import Notifier
from ml_platform.pipeline.sensors import landing_sensor, retrain_job
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


def default_resources(specs: Sequence[ModelSpec] = ()) -> dict[str, dg.ConfigurableResource]:
    """Resources of the active profile (`ML_PLATFORM_PROFILE`, read when definitions load);
    every one resolves paths, URLs and credentials when a run starts.

    `local`: folders under `ML_PLATFORM_HOME` and a child process. `k8s`: S3 (bucket from
    `ML_PLATFORM_S3_BUCKET`; endpoint, region and credentials from boto3's environment), the
    MLflow server at `MLFLOW_TRACKING_URI`, and a training pod per run shaped by `specs`.
    """
    if settings.profile() == "k8s":
        from dagster_aws.s3 import S3Resource

        from ml_platform.compute.k8s import K8sPodTrainer
        from ml_platform.storage.s3 import BUCKET_ENV, S3Lake, S3LandingZone

        return {
            "landing": S3LandingZone(s3=S3Resource(), bucket=dg.EnvVar(BUCKET_ENV),
                                     prefix=os.environ.get("ML_PLATFORM_LANDING_PREFIX", "landing")),
            "lake": S3Lake(s3=S3Resource(), bucket=dg.EnvVar(BUCKET_ENV),
                           prefix=os.environ.get("ML_PLATFORM_LAKE_PREFIX", "lake")),
            "mlflow": MlflowTracker(
                dagster_url=os.environ.get("ML_PLATFORM_DAGSTER_URL", "http://127.0.0.1:3000")),
            "trainer": K8sPodTrainer.from_env(specs),
        }
    return {
        "landing": LandingZone(),
        "lake": Lake(),
        "mlflow": MlflowTracker(),
        "trainer": LocalProcessTrainer(),
    }


def build_definitions(specs: Sequence[ModelSpec] | None = None) -> dg.Definitions:
    """Assets, checks, jobs and resources for `specs` (default: the shipped specs)."""
    specs = list(specs) if specs is not None else load_specs()
    datasets = list(datasets_of(specs).values())
    assets: list[dg.AssetsDefinition] = []
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
                 alert_on_run_failure],
        schedules=[daily_schedule(ds) for ds in datasets],
        resources={**default_resources(specs), "notifier": Notifier()},
        # Every step but training is light; training runs in its own process (local) or its own
        # GPU pod (k8s: PipesK8sClient from the run pod), so a process or a pod per step would
        # only add start-up time per step. Both profiles execute in process.
        executor=dg.in_process_executor,
    )
