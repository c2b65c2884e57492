"""The landing zone: where upstream systems drop one Parquet file per dataset and day.

Layout (a contract): `<root>/<dataset>/<YYYY-MM-DD>.parquet`, optionally with
`<YYYY-MM-DD>.json` beside it (a manifest: expected row count, sha256, ...).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform import settings

_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")


class LandingZone(dg.ConfigurableResource):
    """A local landing-zone folder (`$ML_PLATFORM_HOME/landing` unless `root` is set)."""

    root: str | None = None

    @property
    def base(self) -> Path:
        return Path(self.root) if self.root else settings.landing_dir()

    def path(self, dataset: str, day: str) -> Path:
        return self.base / dataset / f"{day}.parquet"

    def days(self, dataset: str) -> list[str]:
        """Landed days of `dataset`, oldest first."""
        folder = self.base / dataset
        if not folder.is_dir():
            return []
        return sorted(m.group(1) for p in folder.iterdir() if (m := _DAY_FILE.match(p.name)))

    def listing(self, dataset: str) -> dict[str, float]:
        """Landed days of `dataset` with the time each file was last written (epoch seconds)."""
        return {day: self.path(dataset, day).stat().st_mtime for day in self.days(dataset)}

    def manifest(self, dataset: str, day: str) -> dict[str, Any] | None:
        path = self.path(dataset, day).with_suffix(".json")
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"manifest {path} is not valid JSON: {exc}") from exc

    def read_bytes(self, dataset: str, day: str) -> bytes:
        path = self.path(dataset, day)
        if not path.exists():
            raise FileNotFoundError(f"no landed file for {dataset} {day}: {path} does not exist")
        return path.read_bytes()

    def land(self, dataset: str, day: dt.date, frame: pd.DataFrame,
             manifest: dict[str, Any] | None = None, *, overwrite: bool = False) -> Path | None:
        """Write one day atomically; returns None when the day exists and `overwrite` is off."""
        path = self.path(dataset, day.isoformat())
        if path.exists() and not overwrite:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        if manifest is not None:
            path.with_suffix(".json").write_text(json.dumps(manifest, indent=2, default=str))
        tmp.replace(path)  # the file appears whole, after its manifest, so a reader never races
        return path
