"""The lake and the landing zone on S3 (the `k8s` profile): any S3-compatible endpoint.

Same interfaces, behaviour and key layout as the local folders (`Lake`, `LandingZone`), one
bucket per platform, one prefix per store: `<prefix>/<dataset>/<YYYY-MM-DD>.parquet` (+ `.json`)
for the landing zone, `<prefix>/<key>` for the lake. S3 objects appear whole, so every write is
atomic as in the local stores.

Credentials and endpoint come from dagster-aws's `S3Resource`; left unset, boto3's standard
chain reads them (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or a pod identity,
`AWS_ENDPOINT_URL_S3`, `AWS_REGION`), which is how the Helm chart configures every pod.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

BUCKET_ENV = "ML_PLATFORM_S3_BUCKET"
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")
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


class S3Lake(_S3Store):
    """The lake under `s3://<bucket>/<prefix>/`; keys as in `Lake`, e.g.
    `bookings/validated/2026-01-01.parquet`."""

    prefix: str = "lake"

    @property
    def is_shared(self) -> bool:
        """Whether other machines (a training pod) can read this lake: an object store can."""
        return True

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


class S3LandingZone(_S3Store):
    """The landing zone under `s3://<bucket>/<prefix>/`: `<dataset>/<YYYY-MM-DD>.parquet`,
    optionally with `<YYYY-MM-DD>.json` (the manifest) beside it."""

    prefix: str = "landing"

    def path(self, dataset: str, day: str) -> str:
        return f"s3://{self.bucket}/{self._key(dataset, f'{day}.parquet')}"

    def days(self, dataset: str) -> list[str]:
        """Landed days of `dataset`, oldest first."""
        return sorted(self.listing(dataset))

    def listing(self, dataset: str) -> dict[str, float]:
        """Landed days of `dataset` with the time each file was last written (epoch seconds)."""
        folder = self._key(dataset) + "/"
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, Delimiter="/")
        found = {}
        for obj in (o for page in pages for o in page.get("Contents", [])):
            if m := _DAY_FILE.match(obj["Key"][len(folder):]):
                found[m.group(1)] = obj["LastModified"].timestamp()
        return dict(sorted(found.items()))

    def manifest(self, dataset: str, day: str) -> dict[str, Any] | None:
        data = self._get(self._key(dataset, f"{day}.json"))
        if data is None:
            return None
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            where = f"s3://{self.bucket}/{self._key(dataset, f'{day}.json')}"
            raise ValueError(f"manifest {where} is not valid JSON: {exc}") from exc

    def read_bytes(self, dataset: str, day: str) -> bytes:
        data = self._get(self._key(dataset, f"{day}.parquet"))
        if data is None:
            path = self.path(dataset, day)
            raise FileNotFoundError(f"no landed file for {dataset} {day}: {path} does not exist")
        return data

    def land(self, dataset: str, day: dt.date, frame: pd.DataFrame,
             manifest: dict[str, Any] | None = None, *, overwrite: bool = False) -> str | None:
        """Write one day; returns None when the day exists and `overwrite` is off."""
        key = self._key(dataset, f"{day.isoformat()}.parquet")
        if not overwrite and self._head(key):
            return None
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        if manifest is not None:
            data = json.dumps(manifest, indent=2, default=str).encode()
            self._put(self._key(dataset, f"{day.isoformat()}.json"), data, "application/json")
        # The data file goes last, after its manifest, so a reader listing days never races.
        self._put(key, buffer.getvalue(), "application/vnd.apache.parquet")
        return self.path(dataset, day.isoformat())
