"""The landing zone: where upstream systems drop one Parquet file per dataset and day.

Layout (a contract, see `storage.day_files`): `<root>/<dataset>/<YYYY-MM-DD>.parquet`,
optionally with `<YYYY-MM-DD>.json` beside it (a manifest: expected row count, sha256, ...).

Only regular files inside the landing zone are read: a symlink is followed only when it
resolves to a regular file inside the zone's root, so a link can neither point the platform
at a file elsewhere on the machine nor crash a listing by dangling.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path
from typing import Any

import pandas as pd

from ml_platform import settings
from ml_platform.storage.day_files import (
    DayWithdrawn,
    Ignored,
    LandedFile,
    Listing,
    NotALandedFile,
    day_file_name,
    make_listing,
    manifest_file_name,
    parse_day_file,
)
from ml_platform.storage.interfaces import LandingStore


class LandingZone(LandingStore):
    """A local landing-zone folder (`$ML_PLATFORM_HOME/landing` unless `root` is set)."""

    root: str | None = None

    @property
    def base(self) -> Path:
        return Path(self.root) if self.root else settings.landing_dir()

    @property
    def is_shared(self) -> bool:
        return False

    def _file(self, dataset: str, day: str) -> Path:
        return self.base / dataset / day_file_name(day)

    def path(self, dataset: str, day: str) -> str:
        return str(self._file(dataset, day))

    def _problem(self, path: Path) -> tuple[os.stat_result | None, str | None]:
        """`(stat of what path leads to, None)` for a regular file inside the zone, else
        `(None, why not)`; `why` is None too when nothing is at `path`."""
        if path.is_symlink():
            target = Path(os.path.realpath(path))
            if not target.exists():
                return None, f"dangling symlink (to {os.readlink(path)})"
            if not target.is_relative_to(Path(os.path.realpath(self.base))):
                return None, f"symlink leading outside the landing zone (to {target})"
        try:
            info = path.stat()
        except FileNotFoundError:
            return None, None
        except OSError as exc:  # a symlink loop, a permission problem: never fatal here
            return None, f"cannot be examined ({exc.strerror or exc})"
        if stat.S_ISDIR(info.st_mode):
            return None, "a directory, not a file"
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file"  # a FIFO would block every reader
        return info, None

    def scan(self, dataset: str) -> Listing:
        folder = self.base / dataset
        if not folder.is_dir():
            return Listing()
        days: list[LandedFile] = []
        ignored: list[Ignored] = []
        for entry in os.scandir(folder):
            parsed = parse_day_file(entry.name)
            if parsed is None:
                continue
            if isinstance(parsed, Ignored):
                ignored.append(parsed)
                continue
            info, why = self._problem(Path(entry.path))
            if info is not None:
                days.append(LandedFile(parsed, entry.path, info.st_mtime, info.st_size))
            elif why is not None:
                ignored.append(Ignored(entry.name, why))
            # else: deleted between the directory read and the stat: not landed any more
        return make_listing(days, ignored)

    def manifest(self, dataset: str, day: str) -> dict[str, Any] | None:
        path = self.base / dataset / manifest_file_name(day)
        info, why = self._problem(path)
        if info is None:
            if why is None:
                return None
            raise ValueError(f"manifest {path} is not read: {why}")
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"manifest {path} is not valid JSON: {exc}") from exc

    def read_bytes(self, dataset: str, day: str) -> bytes:
        path = self._file(dataset, day)
        info, why = self._problem(path)
        if info is None:
            if why is None or not path.exists():  # gone, or a link whose target is gone
                raise DayWithdrawn(dataset, day, str(path))
            raise NotALandedFile(dataset, day, str(path), why)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:  # deleted since the check
            raise DayWithdrawn(dataset, day, str(path)) from exc

    def land(self, dataset: str, day: dt.date, frame: pd.DataFrame,
             manifest: dict[str, Any] | None = None, *, overwrite: bool = False) -> str | None:
        """Write one day atomically; returns None when the day exists and `overwrite` is off."""
        path = self._file(dataset, day.isoformat())
        if path.exists() and not overwrite:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        if manifest is not None:
            path.with_suffix(".json").write_text(json.dumps(manifest, indent=2, default=str))
        tmp.replace(path)  # the file appears whole, after its manifest, so a reader never races
        return str(path)
