"""Incremental features: `<model>/features` is computed once per validated day, and the
training set assembles the newest `window_days` days from those tables. With 40 landed days and
a 14-day window, landing one more day computes that day's features only (no other partition is
materialized again, no other table rewritten) and the training set covers exactly the 14 newest
validated days, with the landed file of each. The per-day tables, concatenated, are the table
the builder makes over the window's rows in one go (results identical to features over the
whole window). Real SQLite Dagster instance from the package's configuration, real lake and
landing folders; no training runs (the retrain job is executed up to `training_set`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml_platform import names
from ml_platform.ml.features import build_features
from ml_platform.ml.training_set import content_hash
from ml_platform.ops.execute import prepare_dagster_home
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key, raw_key, validated_key
from ml_platform.pipeline.sensors import range_tags
from ml_platform.records import TrainingSetRecord
from ml_platform.simulation.landing import land_days
from ml_platform.specs import ModelSpec, load_specs
from ml_platform.storage.lake import Lake
from ml_platform.storage.landing import LandingZone
from ml_platform_tests.services import env

START = dt.date(2026, 1, 1)
LANDED, WINDOW = 40, 14


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    with env(ML_PLATFORM_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dagster")):
        prepare_dagster_home()
        yield tmp_path


def _spec() -> ModelSpec:
    base = next(s for s in load_specs() if s.name == "listing_price")
    return base.model_copy(update={
        "name": "lp_incremental",
        "dataset": base.dataset.model_copy(update={"rows_per_day": 60}),
        "training": base.training.model_copy(update={"window_days": WINDOW}),
    })


def _run(spec: ModelSpec, instance: dg.DagsterInstance, first: str, last: str
         ) -> dg.ExecuteInProcessResult:
    job = build_definitions([spec]).resolve_job_def(names.retrain_job(spec.dataset.name))
    return job.execute_in_process(
        instance=instance, tags=range_tags(first, last),
        asset_selection=[raw_key(spec.dataset.name), validated_key(spec.dataset.name),
                         model_key(spec.name, "features"), model_key(spec.name, "training_set")],
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})


def _day(offset: int) -> str:
    return (START + dt.timedelta(days=offset)).isoformat()


def test_a_new_day_computes_its_features_only(home: Path) -> None:
    spec, instance, lake = _spec(), dg.DagsterInstance.get(), Lake()
    features = model_key(spec.name, "features")
    land_days(LandingZone(), spec.dataset, START, LANDED)
    assert _run(spec, instance, _day(0), _day(LANDED - 1)).success
    tables = {d: Path(lake.uri(names.features_lake_key(spec.name, d))).stat().st_mtime_ns
              for d in (_day(i) for i in range(LANDED))}

    land_days(LandingZone(), spec.dataset, START + dt.timedelta(days=LANDED), 1)
    result = _run(spec, instance, _day(LANDED), _day(LANDED))

    assert result.success
    made = [e.partition for e in result.get_asset_materialization_events() if e.asset_key == features]
    assert made == [_day(LANDED)]
    for day in tables:  # every earlier day: materialized once, its table untouched
        assert len(instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=features, asset_partitions=[day]), limit=5).records) == 1
        assert Path(lake.uri(names.features_lake_key(spec.name, day))).stat().st_mtime_ns == tables[day]
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.asset_key == model_key(spec.name, "training_set")]
    record = TrainingSetRecord.from_metadata(event.materialization.metadata)
    newest = [_day(i) for i in range(LANDED + 1 - WINDOW, LANDED + 1)]
    assert record.partitions == newest
    copied = instance.get_latest_materialization_event(raw_key(spec.dataset.name))
    landed = copied.asset_materialization.metadata["landed_files"].value
    assert record.sources[_day(LANDED)] == landed[_day(LANDED)]["sha256"]
    assert sorted(record.sources) == newest and all(record.sources.values())
    # identical to the builder run once over the window's validated rows
    rows = pd.concat([lake.read_parquet(names.validated_lake_key(spec.dataset.name, d))
                      for d in newest], ignore_index=True)
    whole = build_features(spec.training.feature_builder, rows, key=spec.dataset.key,
                           date_column=spec.dataset.date_column, target=spec.training.target)
    assert record.features_hash == content_hash(whole)
    assert record.rows_train + record.rows_valid + record.rows_test == len(whole)


def test_a_validated_day_without_features_gets_them_from_the_training_set(home: Path) -> None:
    """A model added to a dataset with history: its training set computes the feature
    tables its window lacks, once."""
    spec, instance, lake = _spec(), dg.DagsterInstance.get(), Lake()
    land_days(LandingZone(), spec.dataset, START, 3)
    job = build_definitions([spec]).resolve_job_def(names.retrain_job(spec.dataset.name))
    assert job.execute_in_process(
        instance=instance, tags=range_tags(_day(0), _day(2)),
        asset_selection=[raw_key(spec.dataset.name), validated_key(spec.dataset.name)]).success
    assert not lake.exists(names.features_lake_key(spec.name, _day(0)))

    result = job.execute_in_process(
        instance=instance, asset_selection=[model_key(spec.name, "training_set")])

    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert TrainingSetRecord.from_metadata(event.materialization.metadata).partitions == [
        _day(0), _day(1), _day(2)]
    assert all(lake.exists(names.features_lake_key(spec.name, _day(i))) for i in range(3))
