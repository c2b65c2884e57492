"""Benchmark: the local endpoint (`ml-platform serve`) against plain `mlflow models serve`.

    .venv/bin/python benchmarks/serving.py [--seconds 5] [--clients 4] [--no-write]

On a fresh home, `ml-platform demo` (listing_price, 6 days, 3 epochs) then `demo --retrain`
register v1 and v2 (v2 in production). Then, side by side in one run, with the same input
example (5 raw rows, `dataframe_split`) and the same bounded load (`--clients` loopback
threads, each with a keep-alive connection, sending back to back for `--seconds`):

1. `ml-platform serve`: its router in front of MLflow's scoring server of v2;
2. `mlflow models serve -m models:/listing_price/2 --env-manager local`: the scoring server
   alone (what the router adds is one loopback hop).

Then the switch: one client loops on the endpoint while `ml-platform rollback listing_price`
moves production (and the endpoint) to v1; the longest gap between two answers during the
rollback, against the longest gap of the same client with nothing switching.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from common import ROOT, publish, run_context

MODEL = "listing_price"


def _free_port() -> int:
    from ml_platform.tracking.server import free_port

    return free_port()


def _home() -> tuple[Path, dict[str, str]]:
    from ml_platform.specs.model_spec import SPEC_DIR

    home = Path(tempfile.mkdtemp(prefix="ml_platform_bench_serving_"))
    specs = home / "specs"
    specs.mkdir()
    spec = yaml.safe_load((SPEC_DIR / f"{MODEL}.yaml").read_text())
    spec["training"]["epochs"] = 3
    (specs / f"{MODEL}.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    env |= {"ML_PLATFORM_HOME": str(home), "ML_PLATFORM_SPEC_DIR": str(specs),
            "PYTHONPATH": str(ROOT), "MLFLOW_PORT": str(_free_port())}
    return home, env


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ml_platform.cli", *args,
                           "--mlflow-port", env["MLFLOW_PORT"]],
                          env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"`ml-platform {' '.join(args)}` failed: {done.stderr[-2000:]}")
    return done.stdout


def _wait(url: str, path: str, body: bytes | None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _ = _request(url, path, body)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}{path} did not answer within {timeout:.0f}s")


def _request(url: str, path: str, body: bytes | None,
             conn: http.client.HTTPConnection | None = None) -> tuple[int, str]:
    own = conn is None
    conn = conn or http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        conn.request("POST" if body else "GET", path, body=body,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("X-Model-Version", "")
    finally:
        if own:
            conn.close()


def load(url: str, path: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads sending back to back for `seconds`: rps and latency percentiles."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        mine = []
        while time.monotonic() < end:
            began = time.perf_counter()
            try:
                status, _ = _request(url, path, body, conn)
            except OSError:
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
            if status == 200:
                mine.append(time.perf_counter() - began)
            else:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / seconds,
            "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def longest_gap(url: str, path: str, body: bytes, action: list[str] | None,
                env: dict[str, str], seconds: float) -> dict[str, object]:
    """One client in a loop; with `action`, the CLI command run meanwhile. The longest time
    between two answers while it ran (or over `seconds`), the versions seen, the failures."""
    answers: list[tuple[float, str]] = []
    failures = [0]
    stop = threading.Event()

    def client() -> None:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        while not stop.is_set():
            try:
                status, version = _request(url, path, body, conn)
            except OSError:
                status, version = 0, ""
                conn.close()
                conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
            if status == 200:
                answers.append((time.perf_counter(), version))
            else:
                failures[0] += 1

    thread = threading.Thread(target=client)
    thread.start()
    began = time.perf_counter()
    if action:
        _cli(env, *action)
    else:
        time.sleep(seconds)
    ended = time.perf_counter()
    stop.set()
    thread.join()
    during = [t for t, _ in answers if began <= t <= ended]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    versions = [v for i, (_, v) in enumerate(answers) if i == 0 or answers[i - 1][1] != v]
    return {"longest_gap_ms": max(gaps) * 1000 if gaps else float("nan"),
            "answers": len(during), "failures": failures[0], "versions": versions,
            "seconds": ended - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    home, env = _home()
    serve = plain = None
    try:
        _cli(env, "demo", "--days", "6")
        _cli(env, "demo", "--retrain", "--days", "6")
        port, plain_port = _free_port(), _free_port()
        serve = subprocess.Popen(
            [sys.executable, "-m", "ml_platform.cli", "serve", "--port", str(port),
             "--mlflow-port", env["MLFLOW_PORT"]],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        path = f"/models/{MODEL}/invocations"
        example = home / "serving" / "models" / MODEL / "2" / "serving_input_example.json"
        deadline = time.monotonic() + 300
        while not example.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        body = example.read_bytes()
        _wait(url, path, body)

        tracking = json.loads((home / "mlflow" / "server.json").read_text())["url"]
        plain = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}/2",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(plain_port)],
            # `mlflow models serve` runs `uvicorn` from PATH: this interpreter's.
            env={**env, "MLFLOW_TRACKING_URI": tracking,
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"},
            stdout=(home / "plain.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        plain_url = f"http://127.0.0.1:{plain_port}"
        _wait(plain_url, "/invocations", body)

        rows = {}
        for name, (u, p) in {"endpoint": (url, path), "plain": (plain_url, "/invocations")}.items():
            load(u, p, body, args.clients, 1.0)  # warm-up, not measured
            rows[name] = load(u, p, body, args.clients, args.seconds)
        calm = longest_gap(url, path, body, None, env, args.seconds)
        switch = longest_gap(url, path, body, ["rollback", MODEL], env, args.seconds)
    finally:
        for process in (serve, plain):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)

    e, p = rows["endpoint"], rows["plain"]
    lines = [
        "## Serving: the local endpoint against plain `mlflow models serve`",
        "",
        f"`listing_price` (3 epochs, 6 days), the same 5-row input example (`dataframe_split`) "
        f"sent back to back by {args.clients} loopback client threads (keep-alive) for "
        f"{args.seconds:g} s after a 1 s warm-up, to `ml-platform serve` (router → MLflow's "
        "scoring server of v2) and to `mlflow models serve -m models:/listing_price/2 "
        "--env-manager local` started beside it. The client threads share the machine's cores "
        "with the servers.",
        "",
        *run_context(__file__),
        "",
        "| | requests/s | p50 | p99 | errors |",
        "| --- | --- | --- | --- | --- |",
        f"| `ml-platform serve` (router + scoring server) | **{e['rps']:.0f}** | "
        f"{e['p50_ms']:.1f} ms | {e['p99_ms']:.1f} ms | {e['errors']:.0f} |",
        f"| `mlflow models serve` (scoring server alone) | {p['rps']:.0f} | {p['p50_ms']:.1f} ms | "
        f"{p['p99_ms']:.1f} ms | {p['errors']:.0f} |",
        f"| ratio endpoint / plain | {e['rps'] / p['rps']:.2f} | "
        f"{e['p50_ms'] / p['p50_ms']:.2f} | {e['p99_ms'] / p['p99_ms']:.2f} | |",
        "",
        "A version switch: one client looping on the endpoint while `ml-platform rollback "
        "listing_price` (v2 → v1) runs: the CLI starts, the endpoint starts v1's scoring "
        "server beside v2's, checks it on the input example, switches and stops v2.",
        "",
        "| | duration | answers | failed requests | versions seen | longest gap between answers |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| during `rollback` | {switch['seconds']:.1f} s | {switch['answers']} | "
        f"{switch['failures']} | {' → '.join(map(str, switch['versions']))} | "
        f"**{switch['longest_gap_ms']:.0f} ms** |",
        f"| nothing switching | {calm['seconds']:.1f} s | {calm['answers']} | {calm['failures']} | "
        f"{' → '.join(map(str, calm['versions']))} | {calm['longest_gap_ms']:.0f} ms |",
        "",
        "Read with the load average above: on a busy machine the two servers' figures differ by "
        "noise as much as by the router's loopback hop; the longest gap during the switch is the "
        "client waiting on a CPU shared with a starting scoring server and the CLI, not a "
        "refused request (see the failed-request column).",
    ]
    publish("serving", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
