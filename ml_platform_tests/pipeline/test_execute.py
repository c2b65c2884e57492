"""`ingest`: the sensors' work done once without a daemon (real MLflow server, real SQLite
Dagster instance). New days are registered, validated, trained on, promoted and scored (the
spec's batch predictions); a second
ingest finds nothing; a corrupt day is reported with the failing check and production stays."""

from __future__ import annotations

import datetime as dt

from ml_platform.ops.execute import ingest
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key
from ml_platform.records import PredictionsRecord
from ml_platform.simulation.landing import land_days
from ml_platform.storage.landing import LandingZone
from ml_platform_tests.pipeline.conftest import START, Platform


def test_ingest_catches_up_reports_and_stops_bad_data(platform: Platform) -> None:
    defs = build_definitions([platform.spec])
    # the fixture registered its landed days; ingest registers and runs whatever is due
    first = ingest(defs, platform.spec.dataset, platform.instance, LandingZone())
    assert first["success"] and len(first["days"]) == 6
    assert [p["version"] for p in first["promoted"]] == ["1"]
    assert f"{platform.spec.name}/serving" in first["materialized"]
    # the spec's batch predictions: the new days scored, after the promotion, by v1
    event = platform.instance.get_latest_materialization_event(
        model_key(platform.spec.name, "predictions"))
    assert event is not None and event.asset_materialization is not None
    scored = PredictionsRecord.from_metadata(event.asset_materialization.metadata)
    assert scored.version == "1" and len(scored.partitions) == 6

    assert ingest(defs, platform.spec.dataset, platform.instance, LandingZone())["days"] == []

    bad = START + dt.timedelta(days=10)
    land_days(LandingZone(), platform.spec.dataset, bad, 1, corruption="null_flood",
              damaged_column=platform.spec.training.target)
    report = ingest(defs, platform.spec.dataset, platform.instance, LandingZone())
    assert not report["success"] and report["days"] == [bad.isoformat()]
    nulls = next(c for c in report["failed_checks"] if c["check"] == "nulls")
    assert bad.isoformat() in nulls["description"] and "nightly_price: 500" in nulls["description"]
    assert report["promoted"] == [] and platform.production() == "1"
