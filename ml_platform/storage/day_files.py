"""The landing zone's one naming contract and what a listing of it returns.

A dataset's day is one file named `<YYYY-MM-DD>.parquet` (a real calendar date), optionally with
`<YYYY-MM-DD>.json` beside it (its manifest). Both the local and the S3 landing zone name,
parse and list files through this module only, so the two cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DAY_FILE_SUFFIX = ".parquet"
MANIFEST_SUFFIX = ".json"
#: The shape of a day file's name; `parse_day_file` also checks that the date exists.
DAY_FILE_PATTERN = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")
EXPECTED_NAME = "YYYY-MM-DD.parquet"


def day_file_name(day: str) -> str:
    """`2026-01-01` -> `2026-01-01.parquet`."""
    return f"{day}{DAY_FILE_SUFFIX}"


def manifest_file_name(day: str) -> str:
    """`2026-01-01` -> `2026-01-01.json`."""
    return f"{day}{MANIFEST_SUFFIX}"


@dataclass(frozen=True)
class Ignored:
    """An entry of a dataset's landing folder that is not read, and why (for people)."""

    name: str
    reason: str

    @property
    def key(self) -> str:
        """Identity for "report once": the same name ignored for a new reason is new."""
        return f"{self.name}: {self.reason}"

    def __str__(self) -> str:
        return f"ignored {self.name}: {self.reason}"


def parse_day_file(name: str) -> str | Ignored | None:
    """The day a file name stands for, or why it is not a day file.

    Returns the ISO day for a valid day file; `Ignored` for a name that looks like data but
    is not a day file (`2026-13-45.parquet`, `notes.csv`); None for names that are skipped
    silently: manifests, and hidden or `.tmp` files (writes in progress).
    """
    if name.startswith(".") or name.endswith(".tmp") or name.endswith(MANIFEST_SUFFIX):
        return None
    match = DAY_FILE_PATTERN.match(name)
    if match is None:
        return Ignored(name, f"not a day file (expected {EXPECTED_NAME})")
    day = match.group(1)
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        return Ignored(name, f"{day} is not a calendar date")
    return day


@dataclass(frozen=True)
class LandedFile:
    """One landed day file as listed: where it is, when it was last written, its size."""

    day: str
    uri: str  # a local path or an `s3://bucket/key` URI
    mtime: float  # epoch seconds of the last write
    size: int  # bytes; 0 is listed (reading it fails validation with a reason)


@dataclass(frozen=True)
class Listing:
    """A dataset's landing folder: the readable day files (oldest first) and everything
    else found there, with the reason it is not read."""

    days: Mapping[str, LandedFile] = field(default_factory=dict)
    ignored: tuple[Ignored, ...] = ()

    @property
    def mtimes(self) -> dict[str, float]:
        """`{day: mtime}`, oldest day first: what `listing()` used to return."""
        return {day: f.mtime for day, f in self.days.items()}

    def within(self, first: str, last: str) -> Listing:
        """The days from `first` to `last` (ISO days, inclusive): the dataset's partitions.
        A file dated before `first` is ignored; one dated after `last` is held (listed again,
        as a day, once its partition exists)."""
        days = {d: f for d, f in self.days.items() if first <= d <= last}
        outside = [
            Ignored(day_file_name(d), f"dated before the dataset's start_date {first}"
                    if d < first else "dated in the future: held until its day's partition exists")
            for d in self.days if d not in days
        ]
        return make_listing(days.values(), [*self.ignored, *outside])

    def newly_ignored(self, reported: Iterable[str]) -> list[Ignored]:
        """The ignored entries whose `key` is not in `reported`: to report each one once
        (a sensor keeps the keys it reported in its cursor)."""
        seen = set(reported)
        return [i for i in self.ignored if i.key not in seen]


def make_listing(days: Iterable[LandedFile], ignored: Iterable[Ignored]) -> Listing:
    """A Listing with days sorted by date and ignored entries sorted by name."""
    return Listing(
        days={f.day: f for f in sorted(days, key=lambda f: f.day)},
        ignored=tuple(sorted(ignored, key=lambda i: i.name)),
    )


class LandingError(Exception):
    """A landed day that cannot be read as one."""


class DayWithdrawn(LandingError, FileNotFoundError):
    """The day's file was listed (or registered) but is gone now: deleted upstream. The
    pipeline treats the day as withdrawn, not as a failure. A FileNotFoundError, so code that
    already catches that keeps working."""

    def __init__(self, dataset: str, day: str, where: str) -> None:
        super().__init__(f"no landed file for {dataset} {day}: {where} does not exist (withdrawn)")
        self.dataset, self.day, self.where = dataset, day, where

    def __reduce__(self) -> tuple[type[DayWithdrawn], tuple[str, str, str]]:
        return type(self), (self.dataset, self.day, self.where)  # picklable across processes


class NotALandedFile(LandingError, ValueError):
    """The day's name is present but is not a regular file inside the landing zone (a
    directory, a symlink leading outside it): never read."""

    def __init__(self, dataset: str, day: str, where: str, reason: str) -> None:
        super().__init__(f"{dataset} {day}: {where} is not read: {reason}")
        self.dataset, self.day, self.where, self.reason = dataset, day, where, reason

    def __reduce__(self) -> tuple[type[NotALandedFile], tuple[str, str, str, str]]:
        return type(self), (self.dataset, self.day, self.where, self.reason)
