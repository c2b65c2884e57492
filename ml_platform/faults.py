"""Which failures can heal on their own (retry them) and which cannot (fail at once).

`is_transient(exc)` walks the exception and what it was raised from: connection refused or
reset, timeouts, HTTP 5xx/408/429 and S3 throttling are transient; everything else (a bad
date, a missing file, a KeyError, an HTTP 4xx, a day withdrawn from the landing zone) is
deterministic, and so is anything unknown: retrying a deterministic error only hides its
message behind "exceeded max retries" and costs the backoff.

Depends on nothing else in the package (libraries are imported lazily), so every layer can
use it: the pipeline's retry policy, the CLI's one-line errors.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator

#: HTTP statuses worth retrying: the server is overloaded, restarting or briefly broken.
TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: S3 (and AWS) error codes that mean "slow down" or "try again".
TRANSIENT_AWS_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "SlowDown",
    "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled",
    "RequestThrottledException", "ProvisionedThroughputExceededException",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    "503", "500",
})
#: MLflow REST error codes that say "later".
TRANSIENT_MLFLOW_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"})
_TRANSIENT_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EPIPE, errno.EAGAIN,
})
_STATUS_IN_MESSAGE = re.compile(r"error code (\d{3}) != 200|too many (\d{3}) error responses")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it was raised from (`__cause__`, else `__context__`), innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (requests, urllib, MLflow, botocore), if any."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)  # requests
    if isinstance(status, int):
        return status
    if isinstance(response, dict):  # botocore's ClientError
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(code, int):
            return code
    code = getattr(exc, "code", None)  # urllib.error.HTTPError
    if isinstance(code, int) and 100 <= code < 600:
        return code
    if match := _STATUS_IN_MESSAGE.search(str(exc)):
        return int(match.group(1) or match.group(2))
    return None


def _verdict(exc: BaseException) -> bool | None:
    """True: transient; False: deterministic; None: this one does not tell, look deeper."""
    module = type(exc).__module__
    name = type(exc).__name__
    if module.startswith("botocore"):
        if name == "ClientError":
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            status = http_status(exc)
            return code in TRANSIENT_AWS_CODES or (status is not None and status >= 500)
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError
        return "Connection" in name or "Timeout" in name or None
    if module.startswith("mlflow"):
        code = str(getattr(exc, "error_code", ""))
        if code in TRANSIENT_MLFLOW_CODES:
            return True
        if name == "RestException":  # the server answered with an error of its own
            status = http_status(exc) or exc.get_http_status_code()  # type: ignore[attr-defined]
            return status in TRANSIENT_HTTP_STATUS
        status = http_status(exc)
        if status is not None:
            return status in TRANSIENT_HTTP_STATUS
        return None  # "API request to ... failed with exception ...": the cause tells
    if module.startswith(("requests", "urllib3")):
        status = http_status(exc)
        if status is not None:
            return status in TRANSIENT_HTTP_STATUS
        # ConnectionError, Timeout, RetryError (retries of 5xx ran out), ProtocolError, ...
        return any(word in name for word in ("Connection", "Timeout", "Retry", "Protocol")) or None
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if type(exc).__name__ == "HTTPError" and module == "urllib.error":
        status = http_status(exc)
        return status in TRANSIENT_HTTP_STATUS if status else None
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in _TRANSIENT_ERRNOS
    if isinstance(exc, ValueError | LookupError | TypeError | AttributeError | AssertionError
                  | NotImplementedError | OSError | KeyboardInterrupt | SystemExit):
        return False
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised `exc` can succeed (see the module doc)."""
    for link in causes(exc):
        verdict = _verdict(link)
        if verdict is not None:
            return verdict
    return False


def first_line(exc: BaseException, limit: int = 400) -> str:
    """`Type: message` on one line (whitespace collapsed), at most `limit` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    line = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
    return line if len(line) <= limit else line[: limit - 3] + "..."
