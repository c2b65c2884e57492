"""The record of a running `ml-platform serve` (`<home>/serving/endpoint.json`): written
atomically, ignored once its process is gone, removed only by its writer; and the CLI's
`serve` and `serving status` arguments. No server is started; nothing is faked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ml_platform.cli import build_parser
from ml_platform.serving.endpoint import (
    Endpoint,
    endpoint_file,
    remove_endpoint,
    running_endpoint,
    write_endpoint,
)


def test_the_record_names_a_living_process_or_nothing(tmp_path: Path) -> None:
    assert running_endpoint(tmp_path) is None
    mine = write_endpoint("http://127.0.0.1:8080", tmp_path)
    assert running_endpoint(tmp_path) == mine
    assert mine.invocations_url("listing_price") == (
        "http://127.0.0.1:8080/models/listing_price/invocations")

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = Endpoint(url="http://127.0.0.1:8081", pid=int(gone.stdout), started_at=0.0)
    endpoint_file(tmp_path).write_text(json.dumps(dead.__dict__))
    assert running_endpoint(tmp_path) is None  # a killed `serve` left its record

    remove_endpoint(mine, tmp_path)  # not its record any more: left alone
    assert endpoint_file(tmp_path).exists()
    endpoint_file(tmp_path).write_text("{half")
    assert running_endpoint(tmp_path) is None


def test_serve_and_serving_status_arguments() -> None:
    args = build_parser().parse_args(["serve"])
    assert args.port == 8080
    args = build_parser().parse_args(["serving", "status", "--json"])
    assert args.json is True
    assert build_parser().parse_args(["dev", "--serve-port", "9090"]).serve_port == 9090
