"""Retry what can heal, fail at once on what cannot, and say why in the step's first line.

The steps' `RetryPolicy` retries any exception, so each step body runs inside `fail_fast()`:
a deterministic error (a bad date, a missing file, a KeyError, an HTTP 4xx) becomes a
`dg.Failure` without retries carrying its own one-line message; a transient one (connection
refused, a timeout, a 5xx, throttling: `ml_platform.faults.is_transient`) is retried, and the
last attempt's failure names the tracking server. With the MLflow client's HTTP bounds
(`tracking.http_bounds`: about 32 s per refused request), a dead tracking server fails a step
within two minutes.
"""

import contextlib
from collections.abc import Iterator

import dagster as dg

from ml_platform.faults import causes, first_line, is_transient
from ml_platform.tracking.http_bounds import tracking_failure
from ml_platform.tracking.mlflow_resource import MlflowTracker

# Steps that read or write the lake or the landing zone (S3 in the k8s profile) ride out
# throttling and brief outages.
STORAGE_RETRY = dg.RetryPolicy(
    max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

# Steps that talk to MLflow ride out a restarting tracking server, within about two minutes
# of a dead one (each attempt's requests are bounded too).
MLFLOW_RETRY = dg.RetryPolicy(
    max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@contextlib.contextmanager
def fail_fast(tracker: MlflowTracker | None = None,
              retry_on: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Run a step body: deterministic errors fail at once with their own message; transient
    ones (and `retry_on`) are retried by the step's policy. Errors of the MLflow client name
    `tracker`'s server."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise
    except Exception as exc:
        transient = is_transient(exc) or isinstance(exc, retry_on)
        url = _tracking_url(tracker) if _from_mlflow(exc) else None
        message = tracking_failure(exc, url) if url else first_line(exc)
        raise dg.Failure(description=message, allow_retries=transient) from exc


def _tracking_url(tracker: MlflowTracker | None) -> str | None:
    try:
        return tracker.public_uri if tracker is not None else None
    except ValueError:  # no tracking URI configured: the error says so itself
        return None


def _from_mlflow(exc: BaseException) -> bool:
    return any(type(c).__module__.split(".")[0] in ("mlflow", "requests", "urllib3")
               for c in causes(exc))
