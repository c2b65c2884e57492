"""Two `ml-platform ingest` commands at once on one home, against one alone.

Each round lands the same 4 days of bookings in a fresh home and times, as real CLI processes
sharing the home's MLflow server: one `ingest` alone, then (in another fresh home) two started
together. Budget (the recovery issue): both finish within 1.5x the time of one alone, with one
training and one model version (`ml_platform_tests/test_cli_concurrent_ingest.py` checks the
outcome; this script only times it). Results go to the `concurrent_ingest` section of
docs/benchmarks.md.

    .venv/bin/python benchmarks/concurrent_ingest.py [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import publish, run_context

CLI = [sys.executable, "-m", "ml_platform.cli"]
DAYS = 4


def _home() -> tuple[Path, dict[str, str]]:
    home = Path(tempfile.mkdtemp(prefix="ml_platform_bench_ingest_"))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    env["ML_PLATFORM_HOME"] = str(home)
    subprocess.run([*CLI, "simulate", "--dataset", "bookings", "--days", str(DAYS)], env=env,
                   check=True, capture_output=True)
    return home, env


def _ingests(count: int) -> float:
    """Seconds until `count` ingests started together on a fresh home have all finished."""
    home, env = _home()
    try:
        began = time.perf_counter()
        procs = [subprocess.Popen([*CLI, "ingest"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(count)]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"ingest failed: {err.strip().splitlines()[-1:]}")
        return time.perf_counter() - began
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    alone, together = [], []
    for _ in range(args.rounds):  # side by side in each round: the machine's noise hits both
        alone.append(_ingests(1))
        together.append(_ingests(2))
    one, two = statistics.median(alone), statistics.median(together)
    context = "\n".join(run_context(__file__))
    rows = [
        (f"one `ingest` alone ({DAYS} days, cold home: MLflow server start, training, promotion)",
         f"{one:.1f} s ({_runs(alone)})", "", ""),
        ("two `ingest` at once, until both have finished", f"**{two:.1f} s** ({_runs(together)})",
         f"≤ 1.5 x alone = {1.5 * one:.1f} s", f"{two / (1.5 * one):.2f}"),
    ]
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    body = f"""## Two `ingest` commands at once on one home

{context}

| measure | median (runs) | budget | ratio to budget |
| --- | --- | --- | --- |
{table}

The second command shares the home's MLflow server and finds the days in flight in the first
one's run (`pipeline/day_state.py`), so the days are trained on once.
"""
    publish("concurrent_ingest", body, write=not args.no_write)


if __name__ == "__main__":
    main()
