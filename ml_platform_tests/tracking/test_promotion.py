"""Moving `production` against a real MLflow server: compare-and-set, the registry lock (two
real processes racing), the promotion status that follows the alias (and nothing else written
per move), the moves earlier releases kept as tags, and stale-lock recovery. The model
versions point at tiny run artifacts, not trained models: only the registry is under test."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from mlflow import MlflowClient

from ml_platform.names import Tag
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import (
    LOCK_PREFIX,
    LOCK_TTL_S,
    RECORD_TAG_PREFIX,
    PromotionConflict,
    legacy_records,
    move_alias,
    registry_lock,
)
from ml_platform.tracking.server import MlflowServer


@pytest.fixture
def model(mlflow_server: MlflowServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A registered model with versions 1..3, none in production."""
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = f"race_{request.node.name.split('[')[0][-40:]}_{int(time.time() * 1000) % 10**8}"
    client.create_registered_model(name)
    experiment = client.create_experiment(name)
    for _ in range(3):
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "weights", "model/weights.txt")
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    yield name


@pytest.fixture
def tracker(mlflow_server: MlflowServer) -> MlflowTracker:
    return MlflowTracker(tracking_uri=mlflow_server.url)


def test_compare_and_set_refuses_stale_expectation(tracker: MlflowTracker, model: str) -> None:
    move_alias(tracker, model, "1", expected_current=None, kind="promotion", reason="first",
               triggered_by="test")
    with pytest.raises(PromotionConflict, match=r"is v1, not vNone"):
        move_alias(tracker, model, "2", expected_current=None, kind="promotion", reason="stale",
                   triggered_by="test")
    assert tracker.alias_version(model, "production") == "1"
    with pytest.raises(PromotionConflict, match="already v1"):
        move_alias(tracker, model, "1", expected_current="1", kind="promotion", reason="again",
                   triggered_by="test")


def _status(tracker: MlflowTracker, model: str) -> dict[str, str | None]:
    return {v: tracker.client().get_model_version(model, v).tags.get(Tag.PROMOTION_STATUS)
            for v in ("1", "2", "3")}


def test_the_promotion_status_follows_the_alias(tracker: MlflowTracker, model: str) -> None:
    first = move_alias(tracker, model, "1", expected_current=None, kind="promotion", reason="a",
                       triggered_by="test")
    assert (first.previous_version, first.version, first.kind) == ("", "1", "promotion")
    second = move_alias(tracker, model, "3", expected_current="1", kind="promotion", reason="b",
                        triggered_by="test", metrics={"mae": 4.2})
    assert second.metrics == {"mae": 4.2} and second.previous_version == "1"
    assert _status(tracker, model) == {"1": None, "2": None, "3": "production (promotion)"}
    move_alias(tracker, model, "1", expected_current="3", kind="rollback", reason="c",
               triggered_by="test")
    assert _status(tracker, model) == {"1": "production (rollback)", "2": None, "3": None}
    assert tracker.alias_version(model, "production") == "1"
    # the history is the caller's to record (Dagster): the registry gains no tag per move
    assert not [k for k in tracker.client().get_registered_model(model).tags
                if k.startswith(RECORD_TAG_PREFIX)]


def test_moves_recorded_by_earlier_releases_are_read(tracker: MlflowTracker, model: str) -> None:
    old = {"model": model, "version": "2", "previous_version": None, "kind": "promotion",
           "reason": "gates passed", "triggered_by": "dagster", "alias": "production",
           "at": "2026-01-02T03:04:05+00:00", "metrics": {"mae": 5.0}, "gates": "",
           "forced": False, "dagster_run_id": "abc"}
    tracker.client().set_registered_model_tag(model, f"{RECORD_TAG_PREFIX}001767323045000",
                                              json.dumps(old))
    (tag, record), = legacy_records(tracker, model).items()
    assert tag == f"{RECORD_TAG_PREFIX}001767323045000"
    assert (record.version, record.previous_version, record.metrics) == ("2", "", {"mae": 5.0})


def test_two_processes_racing_exactly_one_wins(tracker: MlflowTracker, model: str,
                                               mlflow_server: MlflowServer) -> None:
    move_alias(tracker, model, "1", expected_current=None, kind="promotion", reason="base",
               triggered_by="test")
    start_at = time.time() + 4.0  # both processes import, then wait for the same instant
    code = """
import json, sys, time
from ml_platform.names import Tag
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import PromotionConflict, move_alias
uri, model, version, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
tracker = MlflowTracker(tracking_uri=uri)
time.sleep(max(0.0, start_at - time.time()))
try:
    move_alias(tracker, model, version, expected_current="1", kind="promotion",
               reason=f"racer {version}", triggered_by=f"racer {version}")
    print(json.dumps({"won": True}))
except PromotionConflict as exc:
    print(json.dumps({"won": False, "why": str(exc)}))
"""
    racers = [subprocess.Popen([sys.executable, "-c", code, mlflow_server.url, model, v,
                                str(start_at)], stdout=subprocess.PIPE, text=True)
              for v in ("2", "3")]
    outcomes = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in racers]
    assert sorted(o["won"] for o in outcomes) == [False, True]
    loser = next(o for o in outcomes if not o["won"])
    assert "not v1" in loser["why"] or "holds the lock" in loser["why"]
    winner = "2" if outcomes[0]["won"] else "3"
    assert tracker.alias_version(model, "production") == winner
    assert _status(tracker, model)[winner] == "production (promotion)"
    assert _status(tracker, model)["1"] is None


def test_stale_lock_of_a_crashed_holder_is_broken(tracker: MlflowTracker, model: str) -> None:
    client = tracker.client()
    client.create_registered_model(f"{LOCK_PREFIX}{model}", tags={
        "acquired_at": str(time.time() - LOCK_TTL_S - 1), "holder": "crashed"})
    with registry_lock(tracker, model, wait_s=5):
        assert client.get_registered_model(f"{LOCK_PREFIX}{model}").tags["holder"] != "crashed"
    assert not client.search_registered_models(f"name = '{LOCK_PREFIX}{model}'")


def test_live_lock_makes_others_wait_then_fail(tracker: MlflowTracker, model: str) -> None:
    with registry_lock(tracker, model), pytest.raises(PromotionConflict, match="holds the lock"):
        move_alias(tracker, model, "1", expected_current=None, kind="promotion",
                   reason="blocked", triggered_by="test", lock_wait_s=1.0)
    assert tracker.alias_version(model, "production") is None


def test_a_retried_registration_returns_the_same_version(tracker: MlflowTracker,
                                                         mlflow_server: MlflowServer) -> None:
    client = MlflowClient(mlflow_server.url)
    name = f"register_{time.time_ns()}"
    run = client.create_run(client.create_experiment(name))
    client.log_text(run.info.run_id, "weights", "model/weights.txt")
    uri = f"runs:/{run.info.run_id}/model"
    first = tracker.register(name, uri, run.info.run_id, tags={"attempt": "1"})
    again = tracker.register(name, uri, run.info.run_id, tags={"attempt": "2"})
    assert first.version == again.version == "1"
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
