"""Every landed version of a day is kept (`pipeline.raw_versions`): re-landing a day, with a
file that is rejected and then with a valid one, adds versions to the lake and overwrites
none; lineage of the first model version still reports the sha256 of the bytes it was trained
on (recorded with its training set), and those bytes are in the lake; retention
(`dataset.raw_versions_kept`) removes old versions but never one a registered version was
trained on. Through `ingest`, on a real Dagster instance and MLflow server; nothing is faked."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from ml_platform import names
from ml_platform.ops.execute import ingest
from ml_platform.ops.lineage import lineage
from ml_platform.pipeline.build import build_definitions
from ml_platform.simulation.landing import land_days
from ml_platform.specs import ModelSpec
from ml_platform.storage.lake import Lake
from ml_platform.storage.landing import LandingZone
from ml_platform_tests.pipeline.conftest import DAYS, START, Platform

pytestmark = pytest.mark.integration
DAY = START + dt.timedelta(days=DAYS - 1)


def _ingest(platform: Platform, spec: ModelSpec | None = None) -> dict:
    spec = spec or platform.spec
    report = ingest(build_definitions([spec]), spec.dataset, platform.instance, LandingZone())
    assert report["success"], report["failed_steps"]
    return report


def _trained_sha(platform: Platform, version: str) -> str:
    chain = lineage(platform.spec, platform.instance, platform.tracker, version=version)
    (file,) = [f for f in chain["raw_files"] if f["partition"] == DAY.isoformat()]
    return file["sha256"]


def _versions() -> set[str]:
    keys = Lake().list_keys(names.raw_versions_prefix("bookings", DAY.isoformat()))
    return {Path(k).stem for k in keys}


def _reland(platform: Platform, **drill: object) -> None:
    land_days(LandingZone(), platform.spec.dataset, DAY, 1, overwrite=True,
              damaged_column=platform.spec.training.target, **drill)  # type: ignore[arg-type]


def test_relanded_days_keep_every_version_and_lineage_the_trained_bytes(platform: Platform) -> None:
    _ingest(platform)
    assert platform.production() == "1"
    trained = _trained_sha(platform, "1")
    data = (Lake().base / names.raw_lake_key("bookings", DAY.isoformat(), trained)).read_bytes()
    assert hashlib.sha256(data).hexdigest() == trained

    _reland(platform, corruption="wrong_dtype")  # rejected: kept as a version, not trained on
    rejected = ingest(build_definitions([platform.spec]), platform.spec.dataset, platform.instance,
                      LandingZone())
    assert not rejected["success"] and rejected["promoted"] == []  # the run's only day: stopped
    assert _trained_sha(platform, "1") == trained and len(_versions()) == 2

    _reland(platform, incomplete=0.95)  # valid, other bytes: a new training includes them
    _ingest(platform)
    assert _versions() >= {trained} and len(_versions()) == 3
    assert _trained_sha(platform, "1") == trained  # lineage tells the bytes v1 was trained on
    newest = max(platform.tracker.client().search_model_versions(f"name = '{platform.spec.name}'"),
                 key=lambda mv: int(mv.version))
    assert int(newest.version) >= 2 and _trained_sha(platform, newest.version) not in {trained}

    keep_one = platform.spec.model_copy(update={"dataset": platform.spec.dataset.model_copy(
        update={"raw_versions_kept": 1})})
    _reland(platform, incomplete=0.92)
    _ingest(platform, keep_one)
    kept = _versions()
    registered = {_trained_sha(platform, mv.version) for mv in
                  platform.tracker.client().search_model_versions(f"name = '{platform.spec.name}'")}
    landed = Path(LandingZone().path("bookings", DAY.isoformat())).read_bytes()
    # never a version a registered model was trained on, and the newest landing; the rejected
    # version and any other are gone
    assert kept == registered | {hashlib.sha256(landed).hexdigest()}
