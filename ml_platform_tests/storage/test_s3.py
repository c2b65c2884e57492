"""The S3 lake and landing zone (`ml_platform.storage.s3`) against a real S3 API: moto's server
on loopback, reached through dagster-aws's `S3Resource` and boto3 exactly as on a cluster. The
lake's URIs are read back with plain `pandas.read_parquet`, as the training entrypoint reads
them. Only the S3 service is an emulation; nothing in the code under test is patched."""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
from dagster_aws.s3 import S3Resource

from ml_platform.storage.day_files import DayWithdrawn
from ml_platform.storage.interfaces import LakeStore, LandingStore
from ml_platform.storage.lake import Lake
from ml_platform.storage.landing import LandingZone
from ml_platform.storage.s3 import S3Lake, S3LandingZone, pyarrow_uri
from ml_platform_tests.services import env, moto_s3

pytestmark = pytest.mark.integration  # starts real servers

BUCKET = "ml-platform-test"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_s3(BUCKET) as url:
        yield url


@pytest.fixture
def lake(endpoint: str, request: pytest.FixtureRequest) -> S3Lake:
    return S3Lake(s3=S3Resource(endpoint_url=endpoint), bucket=BUCKET, prefix=f"lake-{request.node.name}")


@pytest.fixture
def landing(endpoint: str, request: pytest.FixtureRequest) -> S3LandingZone:
    return S3LandingZone(s3=S3Resource(endpoint_url=endpoint), bucket=BUCKET,
                         prefix=f"landing-{request.node.name}")


def _keys(endpoint: str, prefix: str) -> list[str]:
    listed = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


FRAME = pd.DataFrame({"booking_id": ["a", "b"], "nightly_price": [120.5, 99.0]})


def test_lake_round_trip_and_layout(lake: S3Lake, endpoint: str, tmp_path: Path) -> None:
    key = "bookings/validated/2026-01-01.parquet"
    assert not lake.exists(key)
    uri = lake.write_parquet(key, FRAME)
    assert lake.exists(key)
    pd.testing.assert_frame_equal(lake.read_parquet(key), FRAME)
    pd.testing.assert_frame_equal(lake.read_parquet(key, columns=["nightly_price"]), FRAME[["nightly_price"]])
    # What the training entrypoint and `validated` do with a lake URI: plain pandas.
    assert uri == lake.uri(key) and uri.startswith(f"s3://{BUCKET}/{lake.prefix}/{key}?")
    pd.testing.assert_frame_equal(pd.read_parquet(uri), FRAME)

    lake.write_json("serving/listing_price.json", {"version": "3", "when": dt.date(2026, 1, 2)})
    assert lake.read_json("serving/listing_price.json") == {"version": "3", "when": "2026-01-02"}
    lake.write_bytes("bookings/raw/2026-01-01.parquet", b"raw bytes")
    assert _keys(endpoint, lake.prefix) == [
        f"{lake.prefix}/bookings/raw/2026-01-01.parquet",
        f"{lake.prefix}/{key}",
        f"{lake.prefix}/serving/listing_price.json",
    ]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lake.read_json("serving/missing.json")

    # Same behaviour as the local lake for the same calls.
    local = Lake(root=str(tmp_path))
    local.write_parquet(key, FRAME)
    pd.testing.assert_frame_equal(local.read_parquet(key), lake.read_parquet(key))


def test_landing_zone_round_trip(landing: S3LandingZone, endpoint: str) -> None:
    assert landing.days("bookings") == []
    manifest = {"rows": 2, "expected_rows": 2}
    where = landing.land("bookings", dt.date(2026, 1, 2), FRAME, manifest)
    assert where == landing.path("bookings", "2026-01-02") == \
        f"s3://{BUCKET}/{landing.prefix}/bookings/2026-01-02.parquet"
    landing.land("bookings", dt.date(2026, 1, 1), FRAME)
    # a day already landed is kept unless overwrite
    assert landing.land("bookings", dt.date(2026, 1, 1), FRAME.head(1)) is None
    assert len(pd.read_parquet(io.BytesIO(landing.read_bytes("bookings", "2026-01-01")))) == 2
    assert landing.land("bookings", dt.date(2026, 1, 1), FRAME.head(1), overwrite=True) is not None
    assert landing.days("bookings") == ["2026-01-01", "2026-01-02"]
    assert landing.days("other") == []
    assert landing.manifest("bookings", "2026-01-02") == manifest
    assert landing.manifest("bookings", "2026-01-01") is None
    assert _keys(endpoint, landing.prefix) == [
        f"{landing.prefix}/bookings/2026-01-01.parquet",
        f"{landing.prefix}/bookings/2026-01-02.json",
        f"{landing.prefix}/bookings/2026-01-02.parquet",
    ]
    with pytest.raises(FileNotFoundError, match="no landed file for bookings 2026-02-01"):
        landing.read_bytes("bookings", "2026-02-01")


def test_landing_zone_matches_the_local_one(landing: S3LandingZone, tmp_path: Path) -> None:
    local = LandingZone(root=str(tmp_path))
    for zone in (local, landing):
        zone.land("bookings", dt.date(2026, 3, 1), FRAME, {"rows": 2})
        zone.land("bookings", dt.date(2026, 2, 28), FRAME)
    assert landing.days("bookings") == local.days("bookings")
    listed, local_listed = landing.listing("bookings"), local.listing("bookings")
    assert list(listed) == list(local_listed) == ["2026-02-28", "2026-03-01"]
    assert all(abs(t - time.time()) < 300 for t in listed.values())  # moto's clock is ours
    assert landing.manifest("bookings", "2026-03-01") == local.manifest("bookings", "2026-03-01")
    assert landing.read_bytes("bookings", "2026-02-28") == local.read_bytes("bookings", "2026-02-28")


def test_interfaces_and_sharing(landing: S3LandingZone, lake: S3Lake) -> None:
    assert isinstance(landing, LandingStore) and isinstance(lake, LakeStore)
    assert landing.is_shared is True and lake.is_shared is True


def test_listing_ignores_what_is_not_a_day_file(landing: S3LandingZone, endpoint: str) -> None:
    """Same names ignored for the same reasons as the local zone; a key prefix that looks like
    a day (a Spark-written folder) is a folder, not a day; a deleted day reads as withdrawn."""
    client = boto3.client("s3", endpoint_url=endpoint)
    folder = f"{landing.prefix}/bookings"
    landing.land("bookings", dt.date(2026, 1, 1), FRAME, {"rows": 2})
    for key in ("2026-13-45.parquet", "notes.txt", "2026-01-04.parquet/part-0.parquet",
                "2026-01-05.parquet.tmp", ""):
        client.put_object(Bucket=BUCKET, Key=f"{folder}/{key}", Body=b"x")
    listing = landing.scan("bookings")
    assert list(listing.days) == ["2026-01-01"]
    day = listing.days["2026-01-01"]
    assert day.uri == landing.path("bookings", "2026-01-01") and day.size > 0
    assert {i.name: i.reason for i in listing.ignored} == {
        "2026-13-45.parquet": "2026-13-45 is not a calendar date",
        "notes.txt": "not a day file (expected YYYY-MM-DD.parquet)",
        "2026-01-04.parquet": "a folder (key prefix), not a file",
    }
    client.delete_object(Bucket=BUCKET, Key=f"{folder}/2026-01-01.parquet")
    with pytest.raises(DayWithdrawn, match="no landed file for bookings 2026-01-01"):
        landing.read_bytes("bookings", "2026-01-01")


def test_bad_manifest_names_the_object(landing: S3LandingZone, endpoint: str) -> None:
    boto3.client("s3", endpoint_url=endpoint).put_object(
        Bucket=BUCKET, Key=f"{landing.prefix}/bookings/2026-01-05.json", Body=b"{not json")
    with pytest.raises(ValueError, match=rf"manifest s3://{BUCKET}/.*2026-01-05.json is not valid JSON"):
        landing.manifest("bookings", "2026-01-05")


def test_endpoint_from_the_environment(endpoint: str) -> None:
    """With no endpoint configured, boto3 (and so the lake's URIs) take `AWS_ENDPOINT_URL_S3`,
    as in the chart's pods."""
    with env(AWS_ENDPOINT_URL_S3=endpoint):
        lake = S3Lake(s3=S3Resource(), bucket=BUCKET, prefix="lake-env")
        lake.write_parquet("t.parquet", FRAME)
        pd.testing.assert_frame_equal(pd.read_parquet(lake.uri("t.parquet")), FRAME)


def test_uri_of_aws_and_custom_endpoints() -> None:
    assert pyarrow_uri("b", "k/x.parquet", None, None) == "s3://b/k/x.parquet"
    assert pyarrow_uri("b", "k", "https://s3.eu-west-1.amazonaws.com", "eu-west-1") == "s3://b/k"
    assert pyarrow_uri("b", "k", "http://minio.data:9000", "us-east-1") == \
        "s3://b/k?endpoint_override=minio.data%3A9000&scheme=http&region=us-east-1"


def test_landing_sensor_works_on_s3(landing: S3LandingZone, tmp_path: Path) -> None:
    """The same landing sensor, handed the S3 landing zone: registers the landed days and asks
    for one retrain; the next tick, with its cursor, finds nothing new."""
    import dagster as dg

    from ml_platform.pipeline.build import build_definitions
    from ml_platform.simulation.landing import land_days
    from ml_platform.specs import load_specs

    base = next(s for s in load_specs() if s.name == "listing_price")
    spec = base.model_copy(update={"dataset": base.dataset.model_copy(update={"debounce_seconds": 0})})
    land_days(landing, spec.dataset, dt.date(2026, 3, 1), 2)
    defs = build_definitions([spec])
    sensor = defs.resolve_sensor_def("bookings_landing_sensor")
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        with dg.build_sensor_context(instance=instance, resources={"landing": landing},
                                     definitions=defs) as context:
            first = sensor(context)
        (request,) = first.run_requests
        assert request.tags["dagster/asset_partition_range_end"] == "2026-03-02"
        instance.create_run_for_job(defs.resolve_job_def("bookings_retrain"),
                                    tags=request.tags, status=dg.DagsterRunStatus.NOT_STARTED)
        with dg.build_sensor_context(instance=instance, cursor=first.cursor,
                                     resources={"landing": landing}, definitions=defs) as context:
            again = sensor(context)
        assert again.run_requests == []
