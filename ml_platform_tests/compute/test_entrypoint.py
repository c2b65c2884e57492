"""The training entrypoint's contract: it imports no Dagster core (only dagster-pipes), and
its request round-trips through Pipes extras. Runs in real subprocesses; nothing is faked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ml_platform.compute.request import TrainingRequest


@pytest.mark.integration  # real processes
def test_training_entrypoint_imports_no_dagster_core() -> None:
    code = ("import sys, ml_platform.compute.entrypoint; "
            "bad = [m for m in sys.modules if m == 'dagster' or m.startswith('dagster.') "
            "or m.startswith('dagster_webserver')]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_request_round_trips_through_extras() -> None:
    request = TrainingRequest(
        model="m", task="regression", feature_builder="bookings", target="nightly_price",
        training_set_uri="/tmp/ts.parquet", mlflow_run_id="abc", checkpoint_dir="/tmp/ck",
        hidden=[8], epochs=1, batch_size=4, learning_rate=0.1,
    )
    extras = {**request.to_extras(), "unrelated": 1}
    assert TrainingRequest.from_extras(extras) == request


def test_dataset_schema_is_mlflows_inference() -> None:
    """The fast schema of a split (vectorised null tests, types from the table) is the one
    `mlflow.data.from_pandas` infers, missing values and every column kind included."""
    import datetime as dt

    import numpy as np
    import pandas as pd
    from mlflow.types.utils import _infer_schema

    from ml_platform.compute.entrypoint import column_types, dataset_schema

    n = 50
    frame = pd.DataFrame({
        "key": pd.array([f"k{i}" for i in range(n)], dtype="string"),
        "day": [dt.date(2026, 1, 1 + i % 28) for i in range(n)],
        "segment": ["a" if i % 3 else None for i in range(n)],
        "count": np.arange(n, dtype=np.int64),
        "flag": np.arange(n) % 2 == 0,
        "price": np.where(np.arange(n) % 7 == 0, np.nan, 1.5),
        "f_x": np.ones(n, dtype=np.float32),
        "split": ["train"] * 30 + ["valid"] * 10 + ["test"] * 10,
    })
    types = column_types(frame)
    for split in ("train", "valid", "test"):
        rows = frame[frame["split"] == split]
        assert dataset_schema(rows, types) == _infer_schema(rows)
