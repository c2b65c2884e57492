"""The CLI under `ML_PLATFORM_PROFILE=k8s` acts on the profile's real stores: `simulate`,
`ingest`, `promote`, `rollback`, `history` and `lineage` read and write S3 (moto's server on
loopback), a real PostgreSQL server (the Dagster instance written from the package's `k8s`
instance configuration) and the MLflow server of `MLFLOW_TRACKING_URI`; training runs as a
local child process (`ML_PLATFORM_TRAINER=process`: pods come with the cluster tests). Under
ML_PLATFORM_HOME only the training's local checkpoints appear. Only the S3 service is an
emulation; nothing in the code under test is patched."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_postgres import PostgresRunStorage

from ml_platform.cli import main
from ml_platform.tracking.server import MlflowServer
from ml_platform_tests.services import Postgres, create_database, env, moto_s3, postgres_server

BUCKET = "ml-platform-k8s-cli"
START = dt.date(2026, 5, 1)


@pytest.fixture(scope="module")
def k8s_env(tmp_path_factory: pytest.TempPathFactory,
            mlflow_server: MlflowServer) -> Iterator[dict[str, str]]:
    pg: Postgres
    with postgres_server() as pg, moto_s3(BUCKET) as endpoint:
        create_database(pg, "dagster")
        values = dict(
            ML_PLATFORM_PROFILE="k8s", ML_PLATFORM_TRAINER="process", ML_PLATFORM_S3_BUCKET=BUCKET,
            AWS_ENDPOINT_URL_S3=endpoint, MLFLOW_TRACKING_URI=mlflow_server.url,
            ML_PLATFORM_HOME=str(tmp_path_factory.mktemp("mlp_home")),
            DAGSTER_HOME=str(tmp_path_factory.mktemp("dagster_home")),
            DAGSTER_PG_HOST=pg.host, DAGSTER_PG_PORT=str(pg.port), DAGSTER_PG_USERNAME=pg.user,
            DAGSTER_PG_PASSWORD=pg.password, DAGSTER_PG_DB="dagster",
            # a model name of its own on the session's MLflow server
            ML_PLATFORM_SPEC_DIR=str(_spec_dir(tmp_path_factory.mktemp("specs"))),
        )
        with env(**values):
            yield values


def _spec_dir(folder: Path) -> Path:
    import yaml

    from ml_platform.specs import load_specs

    spec = next(s for s in load_specs() if s.name == "listing_price")
    raw = spec.model_dump(mode="json")
    raw["name"] = "lp_k8s_cli"
    raw["training"]["epochs"] = 6
    (folder / "lp_k8s_cli.yaml").write_text(yaml.safe_dump(raw))
    return folder


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_commands_use_s3_postgres_and_the_tracking_server(
        k8s_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    _cli(capsys, "simulate", "--dataset", "bookings", "--days", "5", "--start", START.isoformat())
    first = json.loads(_cli(capsys, "ingest", "--json"))
    assert first[0]["success"] and [p["version"] for p in first[0]["promoted"]] == ["1"]
    _cli(capsys, "simulate", "--dataset", "bookings", "--days", "1",
         "--start", (START + dt.timedelta(days=5)).isoformat())
    second = json.loads(_cli(capsys, "ingest", "--json"))
    assert [p["version"] for p in second[0]["promoted"]] == ["2"]

    assert "rolled back v2 -> v1" in _cli(capsys, "rollback", "lp_k8s_cli")
    assert "production v1 -> v2" in _cli(capsys, "promote", "lp_k8s_cli", "--version", "2",
                                         "--reason", "back to the newer one")
    history = json.loads(_cli(capsys, "history", "lp_k8s_cli", "--json"))
    assert [(r["kind"], r["version"]) for r in history] == [
        ("promotion", "1"), ("promotion", "2"), ("rollback", "1"), ("manual promotion", "2")]
    chain = json.loads(_cli(capsys, "lineage", "lp_k8s_cli", "--json"))
    assert chain["version"] == "2" and len(chain["partitions"]) == 6
    assert all(f["file"].startswith(f"s3://{BUCKET}/landing/bookings/") for f in chain["raw_files"])

    # S3 holds the landing zone, the lake and the serving manifest ...
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=k8s_env["AWS_ENDPOINT_URL_S3"])
            .list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"landing/bookings/{START.isoformat()}.parquet", "lake/serving/lp_k8s_cli.json"} <= keys
    assert any(k.startswith("lake/lp_k8s_cli/training_set/") for k in keys)
    # ... PostgreSQL the runs and the production moves made by the CLI ...
    instance = dg.DagsterInstance.from_config(k8s_env["DAGSTER_HOME"])
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert len(instance.get_runs()) == 2
    moves = instance.fetch_materializations(dg.AssetKey(["lp_k8s_cli", "production"]), limit=10)
    assert [r.asset_materialization.metadata["kind"].value for r in moves.records][:2] == [
        "manual promotion", "rollback"]
    # ... and the state home only the training's local checkpoints.
    assert sorted(p.name for p in Path(k8s_env["ML_PLATFORM_HOME"]).iterdir()) == ["checkpoints"]
