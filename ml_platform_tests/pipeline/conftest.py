"""Fixtures for pipeline tests: a platform home with landed days, a real SQLite Dagster
instance from the package's `local` instance configuration, and the session's real MLflow server."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.ops.execute import prepare_dagster_home, run_model_pipeline
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key
from ml_platform.simulation.landing import land_days
from ml_platform.specs import ModelSpec, load_specs
from ml_platform.storage.landing import LandingZone
from ml_platform.tracking.mlflow_resource import MlflowTracker

START = dt.date(2026, 3, 1)
DAYS = 6


@dataclass
class Platform:
    home: Path
    instance: dg.DagsterInstance
    spec: ModelSpec
    tracker: MlflowTracker

    def run(self, spec: ModelSpec | None = None, *, force: bool = False
            ) -> dg.ExecuteInProcessResult:
        spec = spec or self.spec
        return run_model_pipeline(build_definitions([spec]), spec, self.instance, LandingZone(),
                                  force_retrain=force, log_level="WARNING")

    def land(self, start: dt.date, days: int, corruption: str | None = None,
             incomplete: float | None = None) -> None:
        land_days(LandingZone(), self.spec.dataset, start, days, corruption=corruption,
                  damaged_column=self.spec.training.target, incomplete=incomplete)

    def production(self) -> str | None:
        return self.tracker.alias_version(self.spec.name, "production")

    def materialized(self, result: dg.ExecuteInProcessResult, stage: str) -> bool:
        key = model_key(self.spec.name, stage)
        return any(e.asset_key == key for e in result.get_asset_materialization_events()
                   if e.event_specific_data is not None)

    def production_moved(self, result: dg.ExecuteInProcessResult) -> bool:
        """Whether the run's `production` materialization moved the alias (every decision
        materializes it; a kept alias says `moved: False`)."""
        key = model_key(self.spec.name, "production")
        return any(e.materialization.metadata["moved"].value
                   for e in result.get_asset_materialization_events() if e.asset_key == key)


def small_spec(name: str, **training: object) -> ModelSpec:
    base = next(s for s in load_specs() if s.name == "listing_price")
    return base.model_copy(update={
        "name": name, "training": base.training.model_copy(update={"epochs": 6, **training}),
    })


@pytest.fixture(scope="module")
def platform(platform_home: Path, request: pytest.FixtureRequest) -> Platform:
    """A home with DAYS landed days; the model name is unique to the test module, so the
    session's shared MLflow server holds nothing of other modules under it."""
    name = f"lp_{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}"
    prepare_dagster_home()  # the package's instance configuration, as the CLI uses it
    instance = dg.DagsterInstance.get()
    p = Platform(platform_home, instance, small_spec(name), MlflowTracker())
    p.land(START, DAYS)
    return p


