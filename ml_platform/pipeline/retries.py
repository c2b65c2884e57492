"""Retry policies of the steps: what may heal by waiting is retried, with a bound."""

from __future__ import annotations

import dagster as dg

# Steps that read or write the lake or the landing zone (S3 in the k8s profile) ride out
# throttling and brief outages; a bad file fails the same way every time, so its `dg.Failure`
# is raised without retries.
STORAGE_RETRY = dg.RetryPolicy(
    max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

# Steps that talk to MLflow ride out a restarting tracking server.
MLFLOW_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
