"""The chart's Dagster instance against a real PostgreSQL server: the `dagster.yaml` and the
environment ConfigMap rendered by `helm template` drive dagster-postgres storage (runs, event
logs, schedules, concurrency pools) on a PostgreSQL started here (initdb/pg_ctl on a loopback
port), while the `k8s` profile's resources run the data half of listing_price's pipeline
(raw -> validated -> features -> training_set) on S3 (moto's server on loopback). The daemon's
init command sets the `training` pool there, and the run launcher's config from the chart
builds the run worker Job, which validates against the Kubernetes schemas with no GPU.

Faked: the S3 service (moto) and the Kubernetes API (it records the Job the launcher creates).
PostgreSQL, Dagster and the pipeline code are real."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import dagster as dg
import pandas as pd
import pytest
import yaml

from ml_platform.compute.k8s import GPU_RESOURCE
from ml_platform.pipeline.build import build_definitions
from ml_platform.simulation.landing import land_days
from ml_platform.specs import load_specs
from ml_platform_tests.kube import config_map, render, validate
from ml_platform_tests.services import Postgres, create_database, env, moto_s3, postgres_server

pytestmark = pytest.mark.integration  # starts real servers

DAYS = 3


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as pg:
        create_database(pg, "dagster")
        yield pg


@pytest.fixture(scope="module")
def cluster_env(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The chart's env ConfigMap and dagster.yaml, pointed at the loopback servers."""
    objects = render("default")
    values = dict(config_map(objects, "-env"))
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(config_map(objects, "-instance")["dagster.yaml"])
    bucket = values["ML_PLATFORM_S3_BUCKET"]
    with moto_s3(bucket) as endpoint:
        values.update(
            DAGSTER_HOME=str(home), ML_PLATFORM_HOME=str(tmp_path_factory.mktemp("mlp_home")),
            HOME=os.environ.get("HOME", "/root"), DAGSTER_PG_HOST=postgres.host,
            DAGSTER_PG_PORT=str(postgres.port), DAGSTER_PG_PASSWORD=postgres.password,
            AWS_ENDPOINT_URL_S3=endpoint,
        )
        assert values["DAGSTER_PG_USERNAME"] == postgres.user
        with env(**values):
            yield values


@pytest.fixture(scope="module")
def instance(cluster_env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(cluster_env["DAGSTER_HOME"]) as inst:
        yield inst


def test_storage_is_postgres(instance: dg.DagsterInstance) -> None:
    names = {type(s).__name__ for s in (instance.run_storage, instance.event_log_storage,
                                        instance.schedule_storage)}
    assert names == {"PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"}
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    pools = instance.get_concurrency_config().pool_config
    assert (pools.default_pool_limit, pools.pool_granularity.value) == (2, "run")
    assert type(instance.compute_log_manager).__name__ == "NoOpComputeLogManager"


def test_daemon_init_sets_the_training_pool(cluster_env: dict[str, str],
                                            instance: dg.DagsterInstance) -> None:
    """Run the daemon's init container command, as rendered, against the real server."""
    (daemon,) = [o for o in render("default") if o["kind"] == "Deployment"
                 and o["metadata"]["name"].endswith("-daemon")]
    command = daemon["spec"]["template"]["spec"]["initContainers"][0]["command"]
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / command[0]), *command[1:]], check=True, capture_output=True,
                   env={**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"})
    assert instance.event_log_storage.get_concurrency_info("training").slot_count == int(command[-1])


def test_k8s_profile_pipeline_on_postgres_and_s3(cluster_env: dict[str, str],
                                                  instance: dg.DagsterInstance) -> None:
    spec = next(s for s in load_specs() if s.name == "listing_price")
    defs = build_definitions([spec])
    resources = defs.resources
    landing = resources["landing"]
    assert type(landing).__name__ == "S3LandingZone"
    with dg.build_resources({"landing": landing}) as built:
        land_days(built.landing, spec.dataset, dt.date(2026, 3, 1), DAYS)
        days = built.landing.days(spec.dataset.name)
    assert len(days) == DAYS
    selection = [dg.AssetKey([spec.dataset.name, "raw"]), dg.AssetKey([spec.dataset.name, "validated"]),
                 dg.AssetKey([spec.name, "features"]), dg.AssetKey([spec.name, "training_set"])]
    result = defs.resolve_job_def(f"{spec.name}_pipeline").execute_in_process(
        instance=instance, asset_selection=selection,
        tags={"dagster/asset_partition_range_start": days[0],
              "dagster/asset_partition_range_end": days[-1]},
    )
    assert result.success
    # The run, its events and check results are in PostgreSQL.
    import psycopg2

    pg = cluster_env
    conn = psycopg2.connect(host=pg["DAGSTER_PG_HOST"], port=pg["DAGSTER_PG_PORT"],
                            user=pg["DAGSTER_PG_USERNAME"], password=pg["DAGSTER_PG_PASSWORD"],
                            dbname=pg["DAGSTER_PG_DB"])
    with conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                    "'ASSET_MATERIALIZATION'", (result.run_id,))
        # raw, validated and features once per day, the training set once
        assert cur.fetchone()[0] == 3 * DAYS + 1
    conn.close()
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey([spec.dataset.name, "validated"]), "schema")])
    assert checks and next(iter(checks.values())).run_id == result.run_id

    # The lake is S3, with the local layout; the training set URI is what the pod reads.
    bucket, prefix = pg["ML_PLATFORM_S3_BUCKET"], pg["ML_PLATFORM_LAKE_PREFIX"]
    listed = boto3.client("s3", endpoint_url=pg["AWS_ENDPOINT_URL_S3"]).list_objects_v2(
        Bucket=bucket, Prefix=f"{prefix}/{spec.dataset.name}/validated/")
    assert [o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]] == [f"{d}.parquet" for d in days]
    ts = instance.get_latest_materialization_event(dg.AssetKey([spec.name, "training_set"]))
    metadata = ts.asset_materialization.metadata
    uri = metadata["path"].value
    assert uri.startswith(f"s3://{bucket}/{prefix}/{spec.name}/training_set/")
    assert len(pd.read_parquet(uri)) == metadata["dagster/row_count"].value


def test_schedule_storage_round_trip(instance: dg.DagsterInstance) -> None:
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import TickData, TickStatus

    tick = instance.create_tick(TickData(
        instigator_origin_id="origin-1", instigator_name="nightly", instigator_type=InstigatorType.SCHEDULE,
        status=TickStatus.STARTED, timestamp=1.0e9, selector_id="selector-1"))
    instance.update_tick(tick.with_status(TickStatus.SUCCESS))
    (stored,) = instance.get_ticks("origin-1", "selector-1")
    assert stored.status == TickStatus.SUCCESS and stored.tick_id == tick.tick_id


class _CapturedJob(Exception):
    pass


def test_run_worker_job_from_the_chart(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    """The chart's run launcher config, in a real K8sRunLauncher, builds the run worker Job:
    valid, light (no GPU), non-root, env from the ConfigMap and Secrets by name."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s import K8sRunLauncher
    from kubernetes.client import ApiClient

    launcher_config = yaml.safe_load(config_map(render("default"), "-instance")["dagster.yaml"])[
        "run_launcher"]["config"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {}}],
    }))
    created: list[Any] = []

    def create_namespaced_job(body: Any, namespace: str, **_: Any) -> None:
        created.append((namespace, body))
        raise _CapturedJob

    batch = SimpleNamespace(create_namespaced_job=create_namespaced_job)
    launcher = K8sRunLauncher(**{**launcher_config, "load_incluster_config": False},
                              kubeconfig_file=str(kubeconfig), k8s_client_batch_api=batch,
                              k8s_client_core_api=SimpleNamespace())
    launcher.register_instance(instance)
    origin = JobPythonOrigin("listing_price_pipeline", RepositoryPythonOrigin(
        executable_path="python", code_pointer=ModuleCodePointer("ml_platform.definitions", "defs", None),
        container_image="registry.example/ml-platform:1.0"))
    run = instance.add_run(DagsterRun(job_name="listing_price_pipeline", job_code_origin=origin))
    with pytest.raises(Exception) as raised:
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    assert created, raised.value
    namespace, body = created[0]
    job = {"apiVersion": "batch/v1", "kind": "Job", **ApiClient().sanitize_for_serialization(body)}
    validate(job)
    assert namespace == launcher_config["job_namespace"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/ml-platform:1.0"
    assert GPU_RESOURCE not in str(job)
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "1Gi"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == launcher_config["service_account_name"]
    assert {"configMapRef": {"name": "mlp-ml-platform-env"}} in container["envFrom"]
    assert {"secretRef": {"name": "ml-platform-s3"}} in container["envFrom"]
    password = next(e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "ml-platform-postgresql",
                                                     "key": "postgresql-password"}
