"""The lake and the landing zone on S3 (the `k8s` profile): any S3-compatible endpoint.

Same interfaces (`LakeStore`, `LandingStore`), behaviour and key layout as the local folders
(`Lake`, `LandingZone`), one bucket per platform, one prefix per store:
`<prefix>/<dataset>/<YYYY-MM-DD>.parquet` (+ `.json`) for the landing zone, `<prefix>/<key>`
for the lake. S3 objects appear whole, so every write is
atomic as in the local stores.

Credentials and endpoint come from dagster-aws's `S3Resource`; left unset, boto3's standard
chain reads them (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or a pod identity,
`AWS_ENDPOINT_URL_S3`, `AWS_REGION`), which is how the Helm chart configures every pod.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from ml_platform.storage.day_files import (
    DayWithdrawn,
    Ignored,
    LandedFile,
    Listing,
    day_file_name,
    make_listing,
    manifest_file_name,
    parse_day_file,
)
from ml_platform.storage.interfaces import LakeStore, LandingStore

BUCKET_ENV = "ML_PLATFORM_S3_BUCKET"
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def pyarrow_uri(bucket: str, key: str, endpoint_url: str | None, region: str | None) -> str:
    """`s3://bucket/key`, plus the endpoint (and region) as pyarrow query parameters when the
    endpoint is not AWS's, so `pandas.read_parquet(uri)` works in any process (the training pod
    included) given only credentials in its environment; pandas hands `s3://` URIs to pyarrow's
    own S3 filesystem, so no s3fs is needed."""
    uri = f"s3://{bucket}/{key}"
    if not endpoint_url:
        return uri
    parts = urlsplit(endpoint_url)
    if (parts.hostname or "").endswith("amazonaws.com"):
        return uri
    query = {"endpoint_override": parts.netloc + parts.path.rstrip("/"), "scheme": parts.scheme or "https"}
    if region:
        query["region"] = region
    return f"{uri}?{urlencode(query)}"


class _S3Store(dg.ConfigurableResource):
    """A prefix of one bucket; the boto3 client is made once per resource instance."""

    s3: S3Resource  # `S3Resource()`: boto3's environment (credentials, endpoint, region)
    bucket: str
    prefix: str

    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def _key(self, *parts: str) -> str:
        return _join(self.prefix, *parts)

    def _head(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return False
            raise
        return True

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return None
            raise

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)


class S3Lake(_S3Store, LakeStore):
    """The lake under `s3://<bucket>/<prefix>/`; keys as in `Lake`, e.g.
    `bookings/validated/2026-01-01.parquet`."""

    prefix: str = "lake"

    @property
    def is_shared(self) -> bool:
        return True  # any process with the credentials reads the same objects

    def uri(self, key: str) -> str:
        meta = self.client().meta
        return pyarrow_uri(self.bucket, self._key(key), meta.endpoint_url, meta.region_name)

    def exists(self, key: str) -> bool:
        return self._head(self._key(key))

    def write_bytes(self, key: str, data: bytes) -> str:
        self._put(self._key(key), data, "application/octet-stream")
        return self.uri(key)

    def write_parquet(self, key: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self._put(self._key(key), buffer.getvalue(), "application/vnd.apache.parquet")
        return self.uri(key)

    def _read(self, key: str) -> bytes:
        data = self._get(self._key(key))
        if data is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        return data

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self._read(key)), columns=columns)

    def write_json(self, key: str, payload: dict[str, Any]) -> str:
        data = json.dumps(payload, indent=2, default=str).encode()
        self._put(self._key(key), data, "application/json")
        return self.uri(key)

    def read_json(self, key: str) -> dict[str, Any]:
        return json.loads(self._read(key))

    def list_keys(self, prefix: str) -> dict[str, float]:
        found: dict[str, float] = {}
        base = f"{self._key('')}/" if self._key("") else ""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self._key(prefix)}/", Delimiter="/")
        for page in pages:
            for obj in page.get("Contents", []):
                found[obj["Key"].removeprefix(base)] = obj["LastModified"].timestamp()
        return dict(sorted(found.items(), key=lambda kv: kv[1]))

    def delete(self, key: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=self._key(key))


class S3LandingZone(_S3Store, LandingStore):
    """The landing zone under `s3://<bucket>/<prefix>/`: `<dataset>/<YYYY-MM-DD>.parquet`,
    optionally with `<YYYY-MM-DD>.json` (the manifest) beside it. S3 has no symlinks; a
    "folder" (a common key prefix, e.g. a Spark-written `2026-01-01.parquet/`) is ignored."""

    prefix: str = "landing"

    @property
    def is_shared(self) -> bool:
        return True

    def path(self, dataset: str, day: str) -> str:
        return f"s3://{self.bucket}/{self._key(dataset, day_file_name(day))}"

    def scan(self, dataset: str) -> Listing:
        folder = self._key(dataset) + "/"
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, Delimiter="/")
        days: list[LandedFile] = []
        ignored: list[Ignored] = []
        for page in pages:
            for sub in page.get("CommonPrefixes", []):
                name = sub["Prefix"][len(folder):].rstrip("/")
                if parse_day_file(name) is not None:
                    ignored.append(Ignored(name, "a folder (key prefix), not a file"))
            for obj in page.get("Contents", []):
                name = obj["Key"][len(folder):]
                parsed = parse_day_file(name) if name else None  # "": the folder's own marker
                if isinstance(parsed, Ignored):
                    ignored.append(parsed)
                elif parsed is not None:
                    uri = f"s3://{self.bucket}/{obj['Key']}"
                    days.append(LandedFile(parsed, uri, obj["LastModified"].timestamp(),
                                           int(obj["Size"])))
        return make_listing(days, ignored)

    def manifest(self, dataset: str, day: str) -> dict[str, Any] | None:
        data = self._get(self._key(dataset, manifest_file_name(day)))
        if data is None:
            return None
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f"s3://{self.bucket}/{self._key(dataset, manifest_file_name(day))}"
            raise ValueError(f"manifest {where} is not valid JSON: {exc}") from exc

    def read_bytes(self, dataset: str, day: str) -> bytes:
        data = self._get(self._key(dataset, day_file_name(day)))
        if data is None:
            raise DayWithdrawn(dataset, day, self.path(dataset, day))
        return data

    def land(self, dataset: str, day: dt.date, frame: pd.DataFrame,
             manifest: dict[str, Any] | None = None, *, overwrite: bool = False) -> str | None:
        """Write one day; returns None when the day exists and `overwrite` is off."""
        key = self._key(dataset, day_file_name(day.isoformat()))
        if not overwrite and self._head(key):
            return None
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        if manifest is not None:
            data = json.dumps(manifest, indent=2, default=str).encode()
            self._put(self._key(dataset, manifest_file_name(day.isoformat())), data,
                      "application/json")
        # The data file goes last, after its manifest, so a reader listing days never races.
        self._put(key, buffer.getvalue(), "application/vnd.apache.parquet")
        return self.path(dataset, day.isoformat())
