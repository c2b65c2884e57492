"""Landing simulated days, as an upstream system would."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from ml_platform.simulation.drills import corrupt
from ml_platform.simulation.generators import generate
from ml_platform.specs import DatasetSpec
from ml_platform.storage.interfaces import LandingStore


@dataclass(frozen=True)
class Landed:
    day: dt.date
    path: str  # where the day lies: a local path or an s3:// URI
    rows: int
    written: bool  # False: the day was already landed and left as it was


def default_start(days: int, today: dt.date | None = None) -> dt.date:
    """The first of `days` days ending yesterday."""
    return (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=days)


def land_days(landing: LandingStore, ds: DatasetSpec, start: dt.date, days: int, *,
              corruption: str | None = None, damaged_column: str | None = None,
              incomplete: float | None = None, late: bool = False,
              overwrite: bool = False) -> list[Landed]:
    """Generate and land `days` consecutive days of `ds` from `start`, each with a manifest.

    Existing days are kept unless `overwrite` (re-running a simulation is a no-op). Drills,
    applied to the last day only: a `corruption` (see `simulation.drills.CORRUPTIONS`) damages
    `damaged_column`; `incomplete` lands only that fraction of its rows (the manifest still
    expects all); `late` holds it back (land it later without `--late`). Drills overwrite.
    """
    out = []
    present = set() if overwrite else set(landing.days(ds.name))
    for offset in range(days - 1 if late else days):
        day = start + dt.timedelta(days=offset)
        last = offset == days - 1
        drill = last and (corruption is not None or incomplete is not None)
        rows = _landed_rows(landing, ds, day) if day.isoformat() in present and not drill else None
        if rows is not None:  # kept as it is: no need to generate it again
            out.append(Landed(day, landing.path(ds.name, day.isoformat()), rows, False))
            continue
        frame = generate(ds.generator, day, ds.rows_per_day)
        if last and incomplete is not None:
            frame = frame.head(int(len(frame) * incomplete))
        if last and corruption:
            if damaged_column is None:
                raise ValueError("a corruption needs the column to damage")
            frame = corrupt(frame, corruption, key=ds.key, target=damaged_column)
        manifest = {
            "dataset": ds.name, "date": day.isoformat(), "rows": len(frame),
            "expected_rows": ds.rows_per_day, "generator": ds.generator,
            "sha256_of_values": hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest(),
        }
        path = landing.land(ds.name, day, frame, manifest, overwrite=overwrite or drill)
        out.append(Landed(day, landing.path(ds.name, day.isoformat()), len(frame), path is not None))
    return out



def _landed_rows(landing: LandingStore, ds: DatasetSpec, day: dt.date) -> int | None:
    """The rows of a landed day as its manifest says; None without a readable one (the day is
    then generated again to count them, and left as it is)."""
    try:
        manifest = landing.manifest(ds.name, day.isoformat())
    except ValueError:
        return None
    rows = (manifest or {}).get("rows")
    return rows if isinstance(rows, int) else None
