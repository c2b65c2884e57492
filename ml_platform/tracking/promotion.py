"""Moving `production`: compare-and-set under a registry lock, with a record of every move.

MLflow has no compare-and-set, so this module adds it on top of the registry alone (no extra
database): a lock that is an MLflow registered model (its creation is atomic on the server).
Each move returns its `PromotionRecord`; the history of moves is the `production` asset's
materializations in Dagster (`pipeline.history`), which records them. On the registry, the
version in production carries `ml_platform.promotion_status`, cleared from the one it replaced.
Earlier releases kept one registered-model tag per move (`legacy_records`, migrated once).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from ml_platform import names
from ml_platform.names import Tag
from ml_platform.records import PromotionRecord
from ml_platform.tracking.mlflow_resource import MlflowTracker

PRODUCTION = names.PRODUCTION_ALIAS
RECORD_TAG_PREFIX = Tag.PROMOTION_RECORD_PREFIX
LOCK_PREFIX = names.REGISTRY_LOCK_PREFIX
LOCK_TTL_S = 120.0


class PromotionConflict(RuntimeError):
    """The alias moved since the caller looked at it, or another promotion holds the lock."""


def actor() -> str:
    """Who is acting: `user@host` for people, overridable for automation."""
    return os.environ.get("ML_PLATFORM_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


@contextlib.contextmanager
def registry_lock(tracker: MlflowTracker, model: str, *, wait_s: float = 10.0) -> Iterator[None]:
    """Hold the promotion lock of `model` for the duration of the block.

    A lock older than LOCK_TTL_S is taken to be left by a crashed holder and is broken.
    """
    from mlflow.exceptions import MlflowException

    client, name = tracker.client(), f"{LOCK_PREFIX}{model}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.create_registered_model(
                name, tags={"acquired_at": str(time.time()), "holder": f"{actor()}:{os.getpid()}"},
                description=f"promotion lock of {model}: held while its production alias moves",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        with contextlib.suppress(MlflowException):  # released between our two calls: retry
            held = client.get_registered_model(name).tags
            if time.time() - float(held.get("acquired_at", 0)) > LOCK_TTL_S:
                client.delete_registered_model(name)
                continue
            if time.monotonic() > deadline:
                raise PromotionConflict(
                    f"another promotion of {model} holds the lock ({held.get('holder')})")
        time.sleep(0.1)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(name)


def lock_held(tracker: MlflowTracker, model: str) -> bool:
    """Whether a move of `model`'s alias is under way (its promotion lock exists)."""
    from mlflow.exceptions import MlflowException

    try:
        tracker.client().get_registered_model(f"{LOCK_PREFIX}{model}")
    except MlflowException:
        return False
    return True


def move_alias(tracker: MlflowTracker, model: str, version: str, *, expected_current: str | None,
               kind: str, reason: str, triggered_by: str, metrics: dict[str, float] | None = None,
               gates: str = "", forced: bool = False, dagster_run_id: str = "",
               alias: str = PRODUCTION, lock_wait_s: float = 10.0) -> PromotionRecord:
    """Point `alias` at `version` if it still points at `expected_current`; record the move.

    Raises PromotionConflict when it does not: the caller decided on stale information.
    """
    client = tracker.client()
    with registry_lock(tracker, model, wait_s=lock_wait_s):
        current = tracker.alias_version(model, alias)
        if current != expected_current:
            raise PromotionConflict(
                f"{model}@{alias} is v{current}, not v{expected_current} as seen when this "
                f"{kind} was decided; re-evaluate against the current version first"
            )
        if current == version:
            raise PromotionConflict(f"{model}@{alias} is already v{version}")
        client.get_model_version(model, version)  # fails clearly on a version that doesn't exist
        client.set_registered_model_alias(model, alias, version)
        record = PromotionRecord(
            model=model, version=version, previous_version=current or "", kind=kind,
            reason=reason, triggered_by=triggered_by, alias=alias,
            at=dt.datetime.now(dt.UTC).isoformat(), metrics=dict(metrics or {}),
            gates=gates, forced=forced, dagster_run_id=dagster_run_id,
        )
        mark_status(tracker, record)
    return record


def mark_status(tracker: MlflowTracker, record: PromotionRecord) -> None:
    """The version now behind the alias says so; the one it replaced no longer does."""
    from mlflow.exceptions import MlflowException

    client = tracker.client()
    client.set_model_version_tag(record.model, record.version, Tag.PROMOTION_STATUS,
                                 f"{record.alias} ({record.kind})")
    if record.previous_version and record.previous_version != record.version:
        with contextlib.suppress(MlflowException):  # a deleted version or an absent tag
            client.delete_model_version_tag(record.model, record.previous_version,
                                            Tag.PROMOTION_STATUS)


def legacy_records(tracker: MlflowTracker, model: str) -> dict[str, PromotionRecord]:
    """The moves earlier releases recorded as registered-model tags, by tag name, oldest first."""
    tags = tracker.client().get_registered_model(model).tags
    return {k: PromotionRecord.from_metadata({**(r := json.loads(v)),
                                              # they said None for "no previous version"
                                              "previous_version": r.get("previous_version") or ""})
            for k, v in sorted(tags.items()) if k.startswith(RECORD_TAG_PREFIX)}


def drop_legacy_record(tracker: MlflowTracker, model: str, tag: str) -> None:
    tracker.client().delete_registered_model_tag(model, tag)


def serving_manifest(tracker: MlflowTracker, model: str) -> dict[str, Any]:
    """What inference reads: the production version, its URIs and test metrics."""
    version = tracker.alias_version(model, PRODUCTION)
    if version is None:
        raise LookupError(f"{model} has no production version to serve")
    mv = tracker.client().get_model_version(model, version)
    if not mv.run_id:
        raise LookupError(f"{model} v{version} was not registered from an MLflow run")
    metrics = tracker.client().get_run(mv.run_id).data.metrics
    return {
        "model": model, "alias": PRODUCTION, "version": version,
        "model_uri": f"models:/{model}@{PRODUCTION}", "pinned_uri": f"models:/{model}/{version}",
        "mlflow_run_id": mv.run_id,
        "metrics": {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")},
        "updated_at": dt.datetime.now(dt.UTC).isoformat(),
    }
