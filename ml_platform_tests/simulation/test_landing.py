"""Landing simulated days: a day already landed is kept and not generated again. The landing
zone is a real one in a temp dir; the generator is counted, not faked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ml_platform.simulation import landing as landing_module
from ml_platform.simulation.landing import land_days
from ml_platform.specs import load_specs
from ml_platform.storage.landing import LandingZone


def test_landed_days_are_kept_and_not_generated_again(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ds = load_specs()[0].dataset
    zone = LandingZone(root=str(tmp_path))
    first = land_days(zone, ds, dt.date(2026, 2, 1), 2)
    assert [x.written for x in first] == [True, True]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}

    generated: list[dt.date] = []
    real = landing_module.generate
    monkeypatch.setattr(landing_module, "generate",
                        lambda name, day, rows: generated.append(day) or real(name, day, rows))
    again = land_days(zone, ds, dt.date(2026, 2, 1), 3)
    assert [x.written for x in again] == [False, False, True]
    assert generated == [dt.date(2026, 2, 3)]  # only the new day
    assert [x.rows for x in again[:2]] == [x.rows for x in first]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
