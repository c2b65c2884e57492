"""What each training used and cost, end to end: two real trainings of a small model through
the `trained` step (the first priced by the cluster-wide table, `$ML_PLATFORM_PRICES`; the
second, forced, by the spec's own `compute.prices`) record their usage on their MLflow runs and
in the step's metadata, the `gpu_utilization` check passes on this CPU machine saying `no GPU`
(or judges the GPUs where there are some), and `ml-platform costs --json` sums exactly what the
two runs recorded, per model and per day; `--since` tomorrow finds none. CLI errors (unknown
model, bad date) are one line with exit status 2. A real MLflow server, Dagster instance and
training processes; nothing is faked."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
import yaml

from ml_platform import names, settings
from ml_platform.cli import main
from ml_platform.names import Usage
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key, raw_key, validated_key
from ml_platform.pipeline.sensors import range_tags
from ml_platform.specs import ModelSpec, Prices
from ml_platform_tests.pipeline.conftest import DAYS, START, Platform

CLUSTER_PRICES = {"cpu_hour": 3.6, "memory_gib_hour": 0.36}
SPEC_PRICES = Prices(cpu_hour=36.0, gpu_hour=2.5)


def _train(platform: Platform, spec: ModelSpec, *, upstream: bool) -> dict[str, Any]:
    """Materialize `trained` of `spec` (forced), with its upstream stages when `upstream`; the
    step's metadata and its `gpu_utilization` check evaluation."""
    trained = model_key(spec.name, "trained")
    selection = [raw_key(spec.dataset.name), validated_key(spec.dataset.name),
                 *(model_key(spec.name, s) for s in ("features", "training_set"))] if upstream else []
    job = build_definitions([spec]).resolve_job_def(names.pipeline_job(spec.name))
    last = START + dt.timedelta(days=DAYS - 1)
    result = job.execute_in_process(
        instance=platform.instance, tags=range_tags(START.isoformat(), last.isoformat()),
        asset_selection=[*selection, trained], raise_on_error=False,
        run_config={"ops": {trained.to_python_identifier(): {"config": {"force": True}}},
                    "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
    assert result.success
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == trained]
    metadata = {k: getattr(v, "value", v)
                for k, v in event.event_specific_data.materialization.metadata.items()}
    (check,) = [c for c in result.get_asset_check_evaluations()
                if c.check_name == names.GPU_UTILIZATION_CHECK]
    return {"metadata": metadata, "check": check}


@pytest.fixture(scope="module")
def trainings(platform: Platform, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Platform, list[dict[str, Any]]]]:
    spec = platform.spec.model_copy(update={
        "training": platform.spec.training.model_copy(update={"epochs": 2})})
    priced = spec.model_copy(update={"compute": spec.compute.model_copy(update={"prices": SPEC_PRICES})})
    specs = tmp_path_factory.mktemp("specs")
    (specs / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(settings.PRICES_ENV, json.dumps(CLUSTER_PRICES))
        mp.setenv("ML_PLATFORM_SPEC_DIR", str(specs))
        done = [_train(platform, spec, upstream=True), _train(platform, priced, upstream=False)]
        yield platform, done


def test_each_training_records_its_usage(trainings: tuple[Platform, list[dict[str, Any]]]) -> None:
    platform, done = trainings
    client = platform.tracker.client()
    first, second = (d["metadata"] for d in done)
    assert first["mlflow_run_id"] != second["mlflow_run_id"]
    for meta in (first, second):
        run = client.get_run(meta["mlflow_run_id"])
        assert meta[Usage.WALL_SECONDS] > 0 and meta[Usage.CPU_SECONDS] > 0
        assert meta[Usage.PEAK_MEMORY_MIB] > 50 and meta[Usage.PROCESSES] == 1
        assert (meta[Usage.REQUEST_CPU], meta[Usage.REQUEST_MEMORY]) == ("2", "4Gi")
        for key in (Usage.WALL_SECONDS, Usage.CPU_SECONDS, Usage.COST):
            assert run.data.metrics[key] == pytest.approx(meta[key])
        assert run.data.tags[Usage.GPU] == meta[Usage.GPU]
        if meta[Usage.GPU_COUNT] == 0:  # this machine: no GPU
            assert meta[Usage.GPU] == Usage.NO_GPU and meta[Usage.GPU_UTILIZATION] == Usage.NO_GPU
            assert meta[Usage.COST_GPU] == 0
    # the cluster's table, then the spec's: 2 cores x 4 GiB for the wall time
    hours = first[Usage.WALL_SECONDS] / 3600
    assert first[Usage.COST] == pytest.approx(hours * (2 * 3.6 + 4 * 0.36) + first[Usage.COST_GPU])
    assert json.loads(first[Usage.PRICES])["cpu_hour"] == 3.6
    assert json.loads(second[Usage.PRICES])["cpu_hour"] == 36.0


def test_gpu_utilization_check_on_a_cpu_training(
        trainings: tuple[Platform, list[dict[str, Any]]]) -> None:
    for d in trainings[1]:
        check = d["check"]
        assert check.severity == dg.AssetCheckSeverity.WARN
        if d["metadata"][Usage.GPU_COUNT] == 0:
            assert check.passed and Usage.NO_GPU in (check.description or "")


def test_costs_json_sums_what_the_runs_recorded(
        trainings: tuple[Platform, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]) -> None:
    platform, done = trainings
    name = platform.spec.name
    client = platform.tracker.client()
    runs = [client.get_run(d["metadata"]["mlflow_run_id"]) for d in done]
    assert main(["costs", name, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    model = report["models"][name]
    assert model["trainings"] == 2 and model["priced_trainings"] == 2
    for field, key in (("cost", Usage.COST), ("cpu_seconds", Usage.CPU_SECONDS),
                       ("wall_seconds", Usage.WALL_SECONDS), ("gpu_seconds", Usage.GPU_SECONDS)):
        assert model[field] == pytest.approx(sum(r.data.metrics[key] for r in runs))
    day = dt.datetime.fromtimestamp(runs[0].info.start_time / 1000, dt.UTC).date().isoformat()
    assert model["days"][day]["trainings"] >= 1
    assert sum(d["trainings"] for d in model["days"].values()) == 2
    assert report["total"]["cost"] == pytest.approx(model["cost"])

    assert main(["costs", name]) == 0  # the table
    table = capsys.readouterr().out
    assert name in table and f"{model['cost']:.4f}" in table

    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    assert main(["costs", "--since", tomorrow, "--json"]) == 0
    later = json.loads(capsys.readouterr().out)
    assert later["models"][name]["trainings"] == 0 and later["models"][name]["cost"] is None


@pytest.mark.parametrize(("argv", "expected"), [
    (["costs", "no_such_model"], "unknown model 'no_such_model'; known: "),
    (["costs", "--since", "yesterday"], "--since 'yesterday' is not a calendar date (YYYY-MM-DD)"),
    (["costs", "listing_price", "--since", "2026-02-30"], "is not a calendar date"),
])
def test_costs_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                   expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
