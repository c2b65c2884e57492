"""What every lake and landing zone offers, local folder or S3 alike.

Abstract Dagster resources rather than `typing.Protocol`s: an asset can annotate a parameter
with `LakeStore` or `LandingStore` and Dagster still recognises it as a resource (it only does
so for `ConfigurableResource` subclasses), while the profile picks the implementation.

Implementations: `storage.lake.Lake` and `storage.landing.LandingZone` (folders under
`ML_PLATFORM_HOME`), `storage.s3.S3Lake` and `storage.s3.S3LandingZone` (one bucket).
"""

from __future__ import annotations

import abc
import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform.storage.day_files import Listing


class LakeStore(dg.ConfigurableResource, abc.ABC):
    """Tables and manifests the assets produce, under relative keys such as
    `bookings/validated/2026-01-01.parquet`. Every write is atomic; writes return `uri(key)`."""

    @property
    @abc.abstractmethod
    def is_shared(self) -> bool:
        """Whether other machines (a training pod) can read this store's URIs."""

    @abc.abstractmethod
    def uri(self, key: str) -> str:
        """Where `key` lives, readable with `pandas.read_parquet` (a path or an `s3://` URI)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def write_bytes(self, key: str, data: bytes) -> str: ...

    @abc.abstractmethod
    def write_parquet(self, key: str, frame: pd.DataFrame) -> str: ...

    @abc.abstractmethod
    def read_parquet(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Raises FileNotFoundError when `key` does not exist."""

    @abc.abstractmethod
    def write_json(self, key: str, payload: dict[str, Any]) -> str: ...

    @abc.abstractmethod
    def read_json(self, key: str) -> dict[str, Any]:
        """Raises FileNotFoundError when `key` does not exist."""

    @abc.abstractmethod
    def list_keys(self, prefix: str) -> dict[str, float]:
        """`{key: time last written (epoch seconds)}` of the keys under the folder `prefix`
        (ending in `/`), oldest first."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; no error when it does not exist."""


class LandingStore(dg.ConfigurableResource, abc.ABC):
    """Where upstream systems drop one file per dataset and day (see `storage.day_files`)."""

    @property
    @abc.abstractmethod
    def is_shared(self) -> bool:
        """Whether other machines can read this store's URIs."""

    @abc.abstractmethod
    def path(self, dataset: str, day: str) -> str:
        """Where the day's file is (or would be): a path or an `s3://` URI, for messages."""

    @abc.abstractmethod
    def scan(self, dataset: str) -> Listing:
        """The readable day files of `dataset` and every other entry with why it is ignored.
        Never raises on what it finds (bad names, folders, dangling or escaping symlinks)."""

    def days(self, dataset: str) -> list[str]:
        """Landed days of `dataset`, oldest first."""
        return list(self.scan(dataset).days)

    def listing(self, dataset: str) -> dict[str, float]:
        """Landed days of `dataset` with the time each file was last written (epoch seconds),
        oldest day first. Kept for existing callers; `scan` also says what was ignored."""
        return self.scan(dataset).mtimes

    @abc.abstractmethod
    def manifest(self, dataset: str, day: str) -> dict[str, Any] | None:
        """The day's manifest, None when there is none; ValueError naming it when unreadable."""

    @abc.abstractmethod
    def read_bytes(self, dataset: str, day: str) -> bytes:
        """The day file's bytes. Raises `DayWithdrawn` when it is gone, `NotALandedFile`
        when the name is there but is not a regular file inside the landing zone."""

    @abc.abstractmethod
    def land(self, dataset: str, day: dt.date, frame: pd.DataFrame,
             manifest: dict[str, Any] | None = None, *, overwrite: bool = False) -> str | None:
        """Write one day (manifest first, data file last); returns `path(...)`, or None when
        the day exists and `overwrite` is off."""
