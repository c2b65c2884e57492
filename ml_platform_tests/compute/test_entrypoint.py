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
