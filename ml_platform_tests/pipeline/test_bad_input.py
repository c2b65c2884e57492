"""Malformed landed files, table-driven, through the real pipeline (real MLflow server, real
SQLite Dagster instance) after a model is already in production. Each bad day must end in a
named check failure or an error naming the file, store nothing in the lake, materialize nothing
downstream, and leave `production` and the registry as they were. Nothing is faked: the bad
files are written into the landing zone as an upstream system would."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.datasets import raw_key, validated_key, validated_lake_key
from ml_platform.simulation.generators import generate
from ml_platform.storage.landing import LandingZone
from ml_platform_tests.pipeline.conftest import DAYS, START, Platform

BAD_DAY = START + dt.timedelta(days=DAYS + 1)


def _clean() -> pd.DataFrame:
    return generate("bookings", BAD_DAY, 1000)


def _parquet(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _set(column: str, value: object, rows: int | None = None) -> Callable[[], bytes]:
    def make() -> bytes:
        frame = _clean()
        frame.loc[frame.index[:rows] if rows else frame.index, column] = value
        return _parquet(frame)
    return make


def _dated_outside() -> bytes:
    frame = _clean()
    frame.loc[frame.index[:40], "booking_date"] = BAD_DAY - dt.timedelta(days=3)
    return _parquet(frame)


def _duplicate_keys() -> bytes:
    frame = _clean()
    frame.loc[frame.index[1:26], "booking_id"] = frame["booking_id"].iloc[0]
    return _parquet(frame)


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], bytes]
    check: str  # the failing check (an unreadable file: `schema`, with the reason and the file)
    mentions: tuple[str, ...]


CASES = [
    Case("missing_column", lambda: _parquet(_clean().drop(columns=["review_score"])),
         "schema", ("missing column", "review_score")),
    Case("wrong_dtype", lambda: _parquet(_clean().assign(bedrooms=lambda f: f.bedrooms.astype(str))),
         "schema", ("wrong dtype", "bedrooms")),
    Case("all_null_column", _set("review_score", np.nan), "nulls", ("review_score: 1000",)),
    Case("negative_values", _set("nightly_price", -5.0, rows=30), "ranges", ("nightly_price: 30",)),
    Case("absurd_values", _set("nights", 10_000, rows=3), "ranges", ("nights: 3",)),
    Case("duplicate_keys", _duplicate_keys, "duplicates", ("25 duplicate", "booking_id")),
    Case("empty_file", lambda: _parquet(_clean().head(0)), "completeness", ("0 of 1000",)),
    Case("rows_outside_partition", _dated_outside, "ranges", ("booking_date: 40",)),
    Case("truncated_parquet", lambda: _parquet(_clean())[:4000], "schema",
         ("is not a readable Parquet file", "landing/bookings/")),
    Case("not_parquet", lambda: _clean().to_csv(index=False).encode(), "schema",
         ("is not a readable Parquet file", "landing/bookings/")),
]


@pytest.fixture(scope="module")
def trained(platform: Platform) -> Platform:
    result = platform.run()
    assert result.success and platform.production() == "1"
    Path(LandingZone().path("bookings", BAD_DAY.isoformat())).parent.mkdir(parents=True, exist_ok=True)
    return platform


def _run_day(platform: Platform, *, stages: list[dg.AssetKey] | None = None
             ) -> dg.ExecuteInProcessResult:
    job = build_definitions([platform.spec]).resolve_job_def(f"{platform.spec.name}_pipeline")
    return job.execute_in_process(
        instance=platform.instance, partition_key=BAD_DAY.isoformat(), raise_on_error=False,
        asset_selection=stages,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )


def _versions(platform: Platform) -> int:
    return len(platform.tracker.client().search_model_versions(f"name = '{platform.spec.name}'"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_file_is_stopped_and_nothing_is_lost(trained: Platform, case: Case) -> None:
    platform = trained
    landed = Path(LandingZone().path("bookings", BAD_DAY.isoformat()))
    landed.write_bytes(case.make())
    before, versions = platform.production(), _versions(platform)

    result = _run_day(platform)

    assert not result.success  # the run's only day is rejected: its checks block
    failed = {e.check_name: e for e in result.get_asset_check_evaluations()
              if e.asset_key == validated_key("bookings") and not e.passed}
    assert case.check in failed, failed
    assert failed[case.check].severity == dg.AssetCheckSeverity.ERROR
    message = failed[case.check].description or ""
    assert BAD_DAY.isoformat() in message
    for text in case.mentions:
        assert text in message, message
    downstream = {e.asset_key for e in result.get_asset_materialization_events()}
    assert downstream <= {raw_key("bookings"), validated_key("bookings")}
    assert not (platform.home / "lake" / validated_lake_key("bookings", BAD_DAY.isoformat())).exists()
    assert platform.production() == before and _versions(platform) == versions


def test_unexpected_column_warns_but_lets_the_day_through(trained: Platform) -> None:
    platform = trained
    Path(LandingZone().path("bookings", BAD_DAY.isoformat())).write_bytes(
        _parquet(_clean().assign(promo_code="SPRING")))
    result = _run_day(platform, stages=[raw_key("bookings"), validated_key("bookings")])
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    warning = checks["unexpected_columns"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert "promo_code" in warning.description
    assert all(checks[n].passed for n in ("schema", "nulls", "ranges", "duplicates", "completeness"))
    stored = pd.read_parquet(platform.home / "lake" / validated_lake_key("bookings", BAD_DAY.isoformat()))
    assert "promo_code" not in stored.columns
