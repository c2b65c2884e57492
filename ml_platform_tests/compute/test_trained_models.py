"""The two shipped models as the training entrypoint logs them, checked as their users meet them.

`listing_price` and `feed_ranking` are trained by `run_training` (the shipped specs'
hyper-parameters, on a few generated days) against a real `mlflow server` process, and
registered with alias `production`. Then: the run holds one point per epoch of the task's
validation metrics, the feature-importance table and chart, its three datasets (digest = the
training-set hash) and system metrics; the features the served model computes from raw rows are
those of the training path, bit for bit; the model loads in a process where ml_platform cannot
be imported; a real `mlflow models serve --env-manager local` process answers raw booking
records with one price per row and a 400 naming a missing or mistyped column; and behavioural
checks: one more bedroom does not cut the price, `booking_id` changes nothing, a better item
ranks higher in the same user's feed; scoring (the evaluation step's) uses the servers it is
given and leaves no MLFLOW_* variable behind. Nothing is faked.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ml_platform.compute.entrypoint import raw_columns, run_training
from ml_platform.compute.request import TrainingRequest
from ml_platform.ml.features import build_features, feature_columns
from ml_platform.ml.training_set import SPLIT_COLUMN, content_hash, make_training_set
from ml_platform.simulation.generators import generate
from ml_platform.specs import ModelSpec, load_specs
from ml_platform.tracking.server import MlflowServer, free_port

pytestmark = pytest.mark.integration
START = dt.date(2026, 2, 1)
DAYS = {"listing_price": 6, "feed_ranking": 5}  # small: both train in seconds


@dataclass
class Trained:
    spec: ModelSpec
    run_id: str
    uri: str  # models:/<name>@production
    summary: dict[str, Any]
    training_set: pd.DataFrame
    tracking_uri: str

    def split(self, name: str) -> pd.DataFrame:
        return self.training_set[self.training_set[SPLIT_COLUMN] == name].reset_index(drop=True)

    def raw(self, name: str) -> pd.DataFrame:
        """The split's raw rows: what a client sends (no features, no target)."""
        part = self.split(name)
        return part[raw_columns(part, self.spec.training.target)]


def _train(spec: ModelSpec, server: MlflowServer, tmp: Path) -> Trained:
    import mlflow

    ds, tr = spec.dataset, spec.training
    raw = pd.concat([generate(ds.generator, START + dt.timedelta(days=i), ds.rows_per_day)
                     for i in range(DAYS[spec.name])], ignore_index=True)
    feats = build_features(tr.feature_builder, raw, key=ds.key, date_column=ds.date_column,
                           target=tr.target)
    ts = make_training_set(feats, key=ds.key, valid_fraction=tr.valid_fraction,
                           test_fraction=tr.test_fraction, seed=tr.seed, split_by=spec.query_columns)
    digest = content_hash(ts)
    path = tmp / f"{digest[:16]}.parquet"
    ts.to_parquet(path)
    name = f"{spec.name}_{os.getpid()}"
    client = mlflow.MlflowClient(server.url)
    experiment = client.create_experiment(name)
    run_id = client.create_run(experiment).info.run_id
    request = TrainingRequest(
        model=name, task=tr.task, feature_builder=tr.feature_builder, target=tr.target,
        training_set_uri=str(path), mlflow_run_id=run_id, checkpoint_dir=str(tmp / "ckpt"),
        hidden=list(tr.hidden), epochs=tr.epochs, batch_size=tr.batch_size,
        learning_rate=tr.learning_rate, seed=tr.seed, query_columns=list(spec.query_columns),
        training_set_hash=digest,
        partitions=[(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS[spec.name])],
        pip_requirements=[f"torch=={version('torch').split('+')[0]}",
                          f"mlflow=={version('mlflow')}"],
    )
    mlflow.set_tracking_uri(server.url)
    summary = run_training(request)
    mv = mlflow.register_model(summary["model_uri"], name)
    client.set_registered_model_alias(name, "production", mv.version)
    return Trained(spec, run_id, f"models:/{name}@production", summary, ts, server.url)


def _spec(name: str) -> ModelSpec:
    return next(s for s in load_specs() if s.name == name)


@pytest.fixture(scope="module")
def price(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(_spec("listing_price"), mlflow_server, tmp_path_factory.mktemp("price"))


@pytest.fixture(scope="module")
def ranking(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(_spec("feed_ranking"), mlflow_server, tmp_path_factory.mktemp("ranking"))


def _load(trained: Trained) -> Any:
    import mlflow

    mlflow.set_registry_uri(trained.tracking_uri)
    return mlflow.pyfunc.load_model(trained.uri)


@pytest.mark.parametrize(("which", "per_epoch", "absent"), [
    ("price", ("train_loss", "valid_mae", "valid_rmse", "valid_loss"), "valid_ndcg_at_10"),
    ("ranking", ("train_loss", "valid_ndcg_at_10", "valid_precision_at_10", "valid_loss"),
     "valid_mae"),
])
def test_run_records_what_the_seed_names(which: str, per_epoch: tuple[str, ...], absent: str,
                                         request: pytest.FixtureRequest) -> None:
    import mlflow

    trained: Trained = request.getfixturevalue(which)
    client = mlflow.MlflowClient(trained.tracking_uri)
    run = client.get_run(trained.run_id)
    epochs = trained.spec.training.epochs
    for metric in per_epoch:
        steps = [m.step for m in client.get_metric_history(trained.run_id, metric)]
        assert sorted(steps) == list(range(1, epochs + 1)), metric
    assert absent not in run.data.metrics  # per-task names only
    assert run.data.params["task"] == trained.spec.training.task
    assert run.data.params["loss"] == ("lambdarank" if which == "ranking" else "mse")
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        run.data.metrics)

    artifacts = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"loss_curve.png", "feature_importance.json", "feature_importance.png"} <= artifacts
    table = json.loads(Path(client.download_artifacts(
        trained.run_id, "feature_importance.json")).read_text())
    columns = table["columns"]
    rows = [dict(zip(columns, r, strict=True)) for r in table["data"]]
    # Raw input columns, in the dataset's terms; the top ones reach the summary (and metadata).
    assert {r["column"] for r in rows} <= set(trained.spec.dataset.columns)
    top = [k.removeprefix("importance.") for k in trained.summary if k.startswith("importance.")]
    assert top == [r["column"] for r in rows][: len(top)] and len(top) >= 4
    assert rows[0]["importance"] > 0

    digest = content_hash(trained.training_set)
    contexts = {d.dataset.digest: set() for d in run.inputs.dataset_inputs}
    for d in run.inputs.dataset_inputs:
        assert d.dataset.digest == digest[:16] and digest[:16] in d.dataset.source
        contexts[d.dataset.digest] |= {t.value for t in d.tags if t.key == "mlflow.data.context"}
    assert contexts == {digest[:16]: {"training", "validation", "test"}}


def test_listing_price_clears_its_gate(price: Trained) -> None:
    assert price.summary["test_mae"] < 12


def test_feed_ranking_clears_its_gate(ranking: Trained) -> None:
    assert ranking.summary["test_ndcg_at_10"] > 0.78
    assert 0 < ranking.summary["test_precision_at_10"] <= 1


def test_scoring_uses_the_servers_it_is_given_and_sets_none(price: Trained,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring names its servers: an MLFLOW_REGISTRY_URI from elsewhere (here: nothing
    listens there) is not used, and no MLFLOW_* variable is left for child processes."""
    from ml_platform.tracking.scoring import score_model

    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"http://127.0.0.1:{free_port()}")
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    test = price.split("test")
    metrics = score_model(price.uri, price.tracking_uri, test, price.spec.training.target,
                          price.spec.training.task)
    assert metrics["mae"] < 12
    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")} == before


@pytest.mark.parametrize("which", ["price", "ranking"])
def test_served_features_are_the_training_features(which: str,
                                                   request: pytest.FixtureRequest) -> None:
    trained: Trained = request.getfixturevalue(which)
    model = _load(trained)
    test = trained.split("test")
    served = model.unwrap_python_model().features(trained.raw("test"))
    training = test[list(feature_columns(trained.spec.training.feature_builder))].to_numpy()
    np.testing.assert_array_equal(served, training)
    # The model's own copy of the feature code, not a module shared by every model loaded.
    assert "feature_transforms" not in sys.modules
    # The signature names the raw columns; those the features need are required.
    schema = model.metadata.get_input_schema()
    assert set(schema.input_names()) == set(trained.raw("test").columns)
    assert trained.spec.training.target not in schema.input_names()
    required = set(schema.required_input_names())
    assert trained.spec.dataset.key not in required
    assert set(model.metadata.metadata["input_columns"]) == required


SERVE = """
import json, sys
sys.modules["ml_platform"] = None  # any import of it fails: the model must not need it
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_registry_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
rows = pd.DataFrame(json.loads(sys.argv[3]))
print(json.dumps([float(p) for p in model.predict(rows)]))
"""


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(rows.to_json(orient="records", date_format="iso"))


def test_model_loads_where_ml_platform_cannot_be_imported(price: Trained, tmp_path: Path) -> None:
    rows = price.raw("test").head(5).copy()
    rows["booking_date"] = rows["booking_date"].astype(str)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", SERVE, price.tracking_uri, price.uri,
                          json.dumps(_records(rows))],
                         check=True, capture_output=True, text=True, cwd=tmp_path, env=env)
    served = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(served, _load(price).predict(price.raw("test").head(5)), rtol=1e-6)


def _post(url: str, records: list[dict[str, Any]]) -> tuple[int, str]:
    body = json.dumps({"dataframe_records": records}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_scoring_server_takes_raw_booking_rows(price: Trained, tmp_path: Path) -> None:
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # `mlflow` and the `uvicorn` it starts
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": price.tracking_uri}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", price.uri, "--env-manager",
         "local", "--host", "127.0.0.1", "-p", str(port)],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "scoring server did not start"
                time.sleep(0.5)
        rows = price.raw("test").head(4).copy()
        rows["booking_date"] = rows["booking_date"].astype(str)  # JSON has no dates
        records = _records(rows)
        status, body = _post(f"{base}/invocations", records)
        assert status == 200, body
        prices = json.loads(body)["predictions"]
        assert len(prices) == 4
        np.testing.assert_allclose(prices, _load(price).predict(price.raw("test").head(4)),
                                   rtol=1e-5)

        missing = [{k: v for k, v in r.items() if k != "bedrooms"} for r in records]
        status, body = _post(f"{base}/invocations", missing)
        assert 400 <= status < 500 and "bedrooms" in body, body
        mistyped = [{**r, "accommodates": "four"} for r in records]
        status, body = _post(f"{base}/invocations", mistyped)
        assert 400 <= status < 500 and "accommodates" in body, body
        bad_date = [{**r, "booking_date": "someday"} for r in records]
        status, body = _post(f"{base}/invocations", bad_date)
        assert 400 <= status < 500 and "booking_date" in body, body
    finally:
        os.killpg(server.pid, 15)  # the mlflow CLI and the uvicorn it started
        server.wait(timeout=30)
        log.close()


def test_one_more_bedroom_rarely_lowers_the_price(price: Trained) -> None:
    model = _load(price)
    listings = price.raw("test").drop_duplicates("listing_id")
    listings = listings[listings["bedrooms"] < 20]
    before = model.predict(listings)
    after = model.predict(listings.assign(bedrooms=listings["bedrooms"] + 1))
    lowered = np.mean(after < before * 0.99)
    assert lowered <= 0.05, lowered


def test_price_is_invariant_to_booking_id(price: Trained) -> None:
    model = _load(price)
    rows = price.raw("test").head(200)
    renamed = rows.assign(booking_id=[f"other-{i}" for i in range(len(rows))])
    np.testing.assert_array_equal(model.predict(rows), model.predict(renamed))


def test_a_better_item_ranks_higher_in_the_same_feed(ranking: Trained) -> None:
    model = _load(ranking)
    rows = ranking.raw("test")
    better = rows.assign(item_quality=np.minimum(rows["item_quality"] + 0.3, 1.0))
    query = [rows[c] for c in ranking.spec.query_columns]
    scores = pd.Series(model.predict(rows))
    rank_before = scores.groupby(query).rank(ascending=False, method="min")
    picked = rows.sample(300, random_state=0).index
    improved = pd.Series(model.predict(better.loc[picked]), index=picked)
    gained = []
    for i in picked:
        # Item i made better, the rest of its user's feed unchanged: where does it rank now?
        feed = scores[(rows[query[0].name] == rows.loc[i, query[0].name])
                      & (rows[query[1].name] == rows.loc[i, query[1].name])].drop(i)
        gained.append(rank_before[i] - (1 + int((feed > improved[i]).sum())))
    assert np.mean(gained) > 0.5, np.mean(gained)
    assert np.mean(np.array(gained) >= 0) > 0.9
