"""Running pipelines without a daemon: what `ml-platform demo` and the tests do."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from ml_platform import settings
from ml_platform.pipeline.models import model_key
from ml_platform.pipeline.partitions import day_partitions
from ml_platform.specs import ModelSpec
from ml_platform.storage.landing import LandingZone

_REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def prepare_dagster_home() -> Path:
    """Point DAGSTER_HOME at `$ML_PLATFORM_HOME/dagster` and give it the local profile's
    instance config (the repository's dagster.yaml)."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if _REPO_DAGSTER_YAML.exists() and not target.exists():
        shutil.copyfile(_REPO_DAGSTER_YAML, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def register_landed_days(instance: dg.DagsterInstance, landing: LandingZone,
                         dataset: str) -> list[str]:
    """Add a partition for every landed day not yet registered; returns the new ones."""
    name = day_partitions(dataset).name
    known = set(instance.get_dynamic_partitions(name))
    new = [d for d in landing.days(dataset) if d not in known]
    if new:
        instance.add_dynamic_partitions(name, new)
    return new


def run_model_pipeline(defs: dg.Definitions, spec: ModelSpec, instance: dg.DagsterInstance,
                       *, force_retrain: bool = False,
                       log_level: str = "INFO") -> dg.ExecuteInProcessResult:
    """One run of `<model>_pipeline` over every registered day, in this process.

    Never raises on step failure: callers read the result (failed checks, skipped steps).
    """
    days = sorted(instance.get_dynamic_partitions(day_partitions(spec.dataset.name).name))
    if not days:
        raise ValueError(f"no landed days of {spec.dataset.name}: run `ml-platform simulate` first")
    job = defs.resolve_job_def(f"{spec.name}_pipeline")
    trained = model_key(spec.name, "trained").to_python_identifier()
    return job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": days[0],
              "dagster/asset_partition_range_end": days[-1],
              "ml_platform/trigger": "cli"},
        run_config={
            "ops": {trained: {"config": {"force": force_retrain}}},
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        raise_on_error=False,
    )
