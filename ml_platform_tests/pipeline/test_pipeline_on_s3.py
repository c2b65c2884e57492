"""The model pipeline on the `k8s` profile's storage: landing zone and lake on S3 (moto's real
S3 API on loopback, through boto3 and pyarrow exactly as against AWS or MinIO), training in a
local child process that, like a training pod, sees only S3 URIs. It reaches production; the
training set is read from S3 and every per-epoch checkpoint is mirrored there, where a retried
pod on a fresh disk resumes from it. The real MLflow server and a real SQLite Dagster instance;
only the Kubernetes pod is replaced by the local backend (see compute/test_k8s.py for it)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from ml_platform.compute.local import LocalProcessTrainer
from ml_platform.ops.execute import run_model_pipeline
from ml_platform.pipeline import build
from ml_platform.pipeline.keys import model_key
from ml_platform.simulation.landing import land_days
from ml_platform.storage.s3 import S3Lake, S3LandingZone
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform_tests.pipeline.conftest import small_spec
from ml_platform_tests.services import moto_s3

BUCKET = "ml-platform-pipeline"


@pytest.mark.integration
def test_pipeline_on_s3_mirrors_checkpoints(platform_home: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    spec = small_spec("lp_on_s3")
    with moto_s3(BUCKET) as endpoint:
        s3 = S3Resource(endpoint_url=endpoint)
        landing = S3LandingZone(s3=s3, bucket=BUCKET, prefix="landing")
        lake = S3Lake(s3=s3, bucket=BUCKET, prefix="lake")
        monkeypatch.setattr(build, "resources_for", lambda profile=None, specs=(): {
            "landing": landing, "lake": lake, "mlflow": MlflowTracker(),
            "trainer": LocalProcessTrainer()})
        land_days(landing, spec.dataset, dt.date(2026, 3, 1), 6)
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            result = run_model_pipeline(build.build_definitions([spec]), spec, instance, landing,
                                        log_level="WARNING")
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            trained = instance.get_latest_materialization_event(model_key(spec.name, "trained"))
            run_id = trained.asset_materialization.metadata["mlflow_run_id"].value

        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint)
                .list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert MlflowTracker().alias_version(spec.name, "production") == "1"
    assert any(k.startswith("lake/lp_on_s3/training_set/") for k in keys)
    epochs = spec.training.epochs
    checkpoint = f"lake/checkpoints/{spec.name}/{run_id}/epoch-{epochs:06d}.pt"
    assert [k for k in keys if k.startswith("lake/checkpoints/") and k.endswith(".pt")] == [checkpoint]
    local = platform_home / "checkpoints" / spec.name / run_id
    assert sorted(p.name for p in local.iterdir()) == [f"epoch-{e:06d}.pt" for e in (epochs - 1, epochs)]
