"""Bounds on how long the MLflow client may spend on a tracking server that is down, and the
one line that says so.

MLflow's own defaults (mlflow 3.17, `mlflow/environment_variables.py`) are made to ride out a
rate-limiting SaaS backend: `MLFLOW_HTTP_REQUEST_MAX_RETRIES=7`,
`MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=2`, `MLFLOW_HTTP_REQUEST_BACKOFF_JITTER=1.0`,
`MLFLOW_HTTP_REQUEST_TIMEOUT=120` (seconds per attempt) and `Retry-After` respected without a
cap. urllib3 sleeps `factor * 2**(n-1)` (+ jitter, at most 120 s) after the n-th failed attempt
(none after the first), so one request to a dead server takes about 4 minutes, and to a server
that accepts but never answers 8 x 120 s = 16 minutes; multiplied by the step's own retries,
the 17-minute hang of issue 10.

`HttpBounds` sets these variables for this process and every child it starts (the training
process included), so that one request to a dead server (connection refused) gives up after
about 32 s and one to a hung server after under 2 minutes (`worst_case_seconds`, 104 s). The
pipeline's step retries (transient errors only, see `ml_platform.faults.is_transient`) add
little: a retried step's first MLflow call asks a server that is not this home's booting one
only once (`MlflowTracker.client`), so a dead server fails the retry at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass

from ml_platform.faults import causes, first_line, http_status, is_transient

_URLLIB3_BACKOFF_MAX = 120.0  # urllib3.util.Retry.DEFAULT_BACKOFF_MAX
_CREDENTIALS = re.compile(r"(?<=//)[^/@\s]+@")


@dataclass(frozen=True)
class HttpBounds:
    """MLflow client HTTP settings (values of the `MLFLOW_HTTP_REQUEST_*` variables)."""

    # Refused connections are retried for ~32 s in all (sleeps 0, 2.5, 4.5, 8.5, 16.5 s):
    # long enough to ride out a restarted server (the training process logs through one),
    # short enough that a dead server fails a step well within 2 minutes.
    max_retries: int = 5
    backoff_factor: int = 1  # MLflow reads it as an int
    backoff_jitter: float = 0.5
    timeout: int = 12  # seconds, per attempt (connect and read each)
    respect_retry_after: bool = False  # a server's Retry-After may ask for any wait

    def environ(self) -> dict[str, str]:
        return {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self.backoff_factor),
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": str(self.backoff_jitter),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.timeout),
            "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": str(self.respect_retry_after).lower(),
        }

    def backoff_seconds(self) -> float:
        """The most one request sleeps between its attempts (jitter at its maximum)."""
        sleeps = [0.0 if n <= 1 else min(_URLLIB3_BACKOFF_MAX,
                                         self.backoff_factor * 2 ** (n - 1) + self.backoff_jitter)
                  for n in range(1, self.max_retries + 1)]
        return sum(sleeps)

    def refused_seconds(self) -> float:
        """One request to a server that is gone (connection refused): the sleeps alone."""
        return self.backoff_seconds()

    def worst_case_seconds(self) -> float:
        """One request to a server that accepts and never answers (or a blackholed host):
        every attempt runs into its timeout."""
        return (self.max_retries + 1) * self.timeout + self.backoff_seconds()


DEFAULT_BOUNDS = HttpBounds()


def apply_http_bounds(bounds: HttpBounds = DEFAULT_BOUNDS,
                      environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the MLflow client variables in `environ` (default `os.environ`, so children
    inherit them) where they are not set already: an operator's own values win. Returns the
    values in effect. MLflow reads them on every request, so this works at any time."""
    target = os.environ if environ is None else environ
    for key, value in bounds.environ().items():
        target.setdefault(key, value)
    return {key: target[key] for key in bounds.environ()}


def _why(exc: BaseException) -> str:
    """What went wrong, in a few words, from the innermost cause that tells."""
    texts = " ".join(str(link) for link in causes(exc))
    for link in causes(exc):
        status = http_status(link)
        if status is not None:
            return f"answered HTTP {status}"
    if "Connection refused" in texts or "ConnectionRefused" in texts:
        return "connection refused"
    if "timed out" in texts.lower() or "timeout" in texts.lower():
        return "timed out"
    if "Name or service not known" in texts or "nodename nor servname" in texts:
        return "host name not found"
    if "RemoteDisconnected" in texts or "Connection reset" in texts or "aborted" in texts:
        return "connection dropped"
    return "unreachable"


def tracking_failure(exc: BaseException, url: str,
                     bounds: HttpBounds = DEFAULT_BOUNDS) -> str:
    """One line for an MLflow client error: the server (credentials removed), what happened,
    and whether retrying can help. For an error the server answered deliberately (a 4xx: a
    missing run, an invalid parameter), its own message, since that is the fault to fix."""
    where = scrub(url)
    if is_transient(exc):
        return (f"MLflow tracking server {where} is not available ({_why(exc)}; "
                f"{bounds.max_retries} retries per request, up to "
                f"{bounds.worst_case_seconds():.0f}s): check that it runs, or set "
                "MLFLOW_TRACKING_URI")
    detail = first_line(next((c for c in causes(exc) if type(c).__module__.startswith("mlflow")),
                             exc), limit=300)
    return f"MLflow tracking server {where} refused the request: {scrub(detail)}"


def scrub(text: str) -> str:
    """`text` with any `user:password@` of a URL in it removed."""
    return _CREDENTIALS.sub("", text)
