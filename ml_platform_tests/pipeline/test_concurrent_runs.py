"""Two runs of one model started together, as a backfill beside a sensor run would be: two
processes on one Dagster instance and one MLflow server, one training a weak candidate
(shuffled labels), the other a good one. Each run's evaluation, registration and promotion
decision is about its own candidate: the weak one is rejected, the good one promoted, whatever
the interleaving. Real processes and servers; nothing is faked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import dagster as dg

from ml_platform.names import Tag
from ml_platform.pipeline.keys import model_key
from ml_platform_tests.pipeline.conftest import Platform

RUN = """
import json, sys, time
import dagster as dg
from ml_platform.ops.execute import prepare_dagster_home, run_model_pipeline
from ml_platform.pipeline.build import build_definitions
from ml_platform.storage.landing import LandingZone
from ml_platform_tests.pipeline.conftest import small_spec
name, weak, start_at = sys.argv[1], sys.argv[2] == "weak", float(sys.argv[3])
spec = small_spec(name, shuffle_labels=weak)
prepare_dagster_home()
defs = build_definitions([spec])
time.sleep(max(0.0, start_at - time.time()))
result = run_model_pipeline(defs, spec, dg.DagsterInstance.get(), LandingZone(),
                            force_retrain=True, log_level="WARNING")
print(json.dumps({"run_id": result.run_id, "success": result.success}))
"""


def _stage_metadata(instance: dg.DagsterInstance, run_id: str, model: str,
                    stage: str) -> dict[str, Any]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    event = next(r for r in records if r.asset_key == model_key(model, stage))
    assert event.asset_materialization is not None
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_two_runs_of_one_model_each_judge_their_own_candidate(platform: Platform) -> None:
    name = platform.spec.name
    start_at = time.time() + 8.0  # both processes import, then start the run at once
    procs = {kind: subprocess.Popen([sys.executable, "-c", RUN, name, kind, str(start_at)],
                                    stdout=subprocess.PIPE, text=True)
             for kind in ("weak", "good")}
    runs = {kind: json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1])
            for kind, p in procs.items()}
    assert all(r["success"] for r in runs.values()), runs

    client = platform.tracker.client()
    for kind, run in runs.items():
        trained = _stage_metadata(platform.instance, run["run_id"], name, "trained")
        evaluation = _stage_metadata(platform.instance, run["run_id"], name, "evaluation")
        registered = _stage_metadata(platform.instance, run["run_id"], name, "registered")
        own = trained["mlflow_run_id"]
        assert evaluation["mlflow_run_id"] == own and registered["mlflow_run_id"] == own, kind
        assert client.get_run(own).data.params["shuffle_labels"] == str(kind == "weak")
        assert evaluation["gates_passed"] is (kind == "good")
        version = client.get_model_version(name, registered["version"])
        assert version.run_id == own
        if kind == "weak":
            assert version.tags[Tag.PROMOTION_STATUS].startswith("rejected")

    production = client.get_model_version_by_alias(name, "production")
    assert production.run_id == _stage_metadata(
        platform.instance, runs["good"]["run_id"], name, "trained")["mlflow_run_id"]
