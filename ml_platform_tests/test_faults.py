"""`ml_platform.faults.is_transient` over the exceptions the platform meets: the standard
library's, requests'/urllib3's, botocore's (built as botocore builds them) and MLflow's, alone
and chained the way libraries raise them; and `first_line`. Exceptions are constructed
directly; no server is involved (the MLflow client against real sockets is in
`tracking/test_http_bounds.py`)."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
from email.message import Message

import botocore.exceptions
import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from ml_platform.faults import first_line, is_transient
from ml_platform.storage.day_files import DayWithdrawn


def _response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    return response


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code},
         "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


def _bad_date() -> ValueError:
    try:
        dt.date.fromisoformat("2026-13-45")
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def _raised_while_handling(outer: Exception, inner: Exception) -> Exception:
    """`outer` raised inside an `except` of `inner` without `from`, as MLflow's REST client
    does ("API request to ... failed with exception ...")."""
    try:
        try:
            raise inner
        except Exception:
            raise outer  # noqa: B904
    except Exception as exc:
        return exc
    raise AssertionError("unreachable")


TRANSIENT = [
    ("connection_refused", ConnectionRefusedError(111, "Connection refused")),
    ("connection_reset", ConnectionResetError(104, "Connection reset by peer")),
    ("timeout", TimeoutError("timed out")),
    ("requests_connection", requests.exceptions.ConnectionError("Failed to establish")),
    ("requests_read_timeout", requests.exceptions.ReadTimeout("read timed out")),
    ("requests_retries_of_5xx", requests.exceptions.RetryError("too many 503 error responses")),
    ("http_503", requests.exceptions.HTTPError("503", response=_response(503))),
    ("http_429", requests.exceptions.HTTPError("429", response=_response(429))),
    ("urllib_502", urllib.error.HTTPError("http://x", 502, "Bad Gateway", Message(), None)),
    ("s3_slow_down", _client_error("SlowDown", 503)),
    ("s3_throttling", _client_error("ThrottlingException", 400)),
    ("s3_internal", _client_error("InternalError", 500)),
    ("s3_endpoint_down", botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3")),
    ("s3_read_timeout", botocore.exceptions.ReadTimeoutError(endpoint_url="http://s3")),
    ("mlflow_unavailable", RestException({"error_code": "TEMPORARILY_UNAVAILABLE",
                                          "message": "try later"})),
    ("mlflow_wrapping_refused", _raised_while_handling(
        MlflowException("API request to http://h/api failed with exception Max retries"),
        requests.exceptions.ConnectionError("Connection refused"))),
    ("mlflow_5xx_after_retries", MlflowException(
        "API request to http://h/api failed with exception HTTPConnectionPool(host='h'): Max "
        "retries exceeded (Caused by ResponseError('too many 500 error responses'))")),
    ("runtime_from_refused", _raised_while_handling(RuntimeError("step failed"),
                                                    ConnectionRefusedError(111, "refused"))),
]

DETERMINISTIC = [
    ("value_error", ValueError("bad value")),
    ("bad_date", _bad_date()),
    ("key_error", KeyError("nightly_price")),
    ("file_not_found", FileNotFoundError(2, "No such file", "/x.parquet")),
    ("day_withdrawn", DayWithdrawn("bookings", "2026-01-01", "/landing/b/2026-01-01.parquet")),
    ("json", json.JSONDecodeError("Expecting value", "x", 0)),
    ("http_404", requests.exceptions.HTTPError("404", response=_response(404))),
    ("http_400", requests.exceptions.HTTPError("400", response=_response(400))),
    ("urllib_403", urllib.error.HTTPError("http://x", 403, "Forbidden", Message(), None)),
    ("s3_no_such_key", _client_error("NoSuchKey", 404)),
    ("s3_access_denied", _client_error("AccessDenied", 403)),
    ("mlflow_not_found", RestException({"error_code": "RESOURCE_DOES_NOT_EXIST",
                                        "message": "Run 'x' not found"})),
    ("mlflow_invalid", MlflowException("bad name", error_code=INVALID_PARAMETER_VALUE)),
    ("mlflow_404_page", MlflowException("API request to endpoint /x failed with error code "
                                        "404 != 200")),
    ("unknown", RuntimeError("something odd")),
    ("permission", PermissionError(13, "Permission denied")),
]


@pytest.mark.parametrize("exc", [e for _, e in TRANSIENT], ids=[i for i, _ in TRANSIENT])
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [e for _, e in DETERMINISTIC], ids=[i for i, _ in DETERMINISTIC])
def test_deterministic(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_first_line() -> None:
    assert first_line(ValueError("a\n  b\tc")) == "ValueError: a b c"
    assert first_line(KeyError("x")) == "KeyError: 'x'"
    assert first_line(RuntimeError()) == "RuntimeError"
    long = first_line(ValueError("x" * 1000), limit=50)
    assert len(long) == 50 and long.endswith("...")
