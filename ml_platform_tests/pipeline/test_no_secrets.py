"""Credentials never leak: with a tracking URI that carries a password and a secret in the
environment, a whole pipeline run (real MLflow server, real training process) leaves neither in
Dagster's event log, asset metadata, MLflow params/tags, the serving manifest, lineage output
or the process output. Nothing is faked."""

from __future__ import annotations

import json

import pytest

from ml_platform.ops.lineage import lineage
from ml_platform.storage.lake import Lake
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform_tests.pipeline.conftest import Platform

PASSWORD = "hunter2-not-for-logs"
SECRET = "aws-secret-not-for-logs"


def test_credentials_appear_nowhere(platform: Platform, monkeypatch: pytest.MonkeyPatch,
                                    capfd: pytest.CaptureFixture[str]) -> None:
    url = platform.tracker.uri.replace("http://", f"http://admin:{PASSWORD}@")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    result = platform.run()

    assert result.success
    tracker = MlflowTracker()
    assert PASSWORD in tracker.uri and PASSWORD not in tracker.public_uri
    seen = [str(record) for record in platform.instance.all_logs(result.run_id)]
    version = tracker.alias_version(platform.spec.name, "production")
    mv = tracker.client().get_model_version(platform.spec.name, version)
    run = tracker.client().get_run(mv.run_id)
    seen += [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(mv.tags)]
    seen.append(json.dumps(Lake().read_json(f"serving/{platform.spec.name}.json")))
    seen.append(json.dumps(lineage(platform.spec, platform.instance, tracker), default=str))
    out, err = capfd.readouterr()
    seen += [out, err]
    assert any(mv.run_id in text for text in seen)  # the net caught the run's records
    for text in seen:
        assert PASSWORD not in text and SECRET not in text
