"""Benchmark: `listing_price` at the seed's data sizes, end to end, and how the daily retrain's
cost grows with history.

    .venv/bin/python benchmarks/scale.py [--days 30] [--rows-per-day 170000]
        [--histories 30,180,365] [--history-rows 1000] [--repeats 3] [--skip-seed]
        [--skip-growth] [--no-write]

**Seed scale.** A fresh home (a temp dir) holding only `listing_price`, its shipped spec with
`dataset.rows_per_day` set to `--rows-per-day` (hyper-parameters, window and gates unchanged).
`ml-platform simulate` lands `--days` days; `ml-platform ingest` takes them from landed data to
production (the first run); one more day is landed and `ingest` again is the daily retrain.
The home's MLflow server is started once by this script, as the daemon's deployment has it
running; every command is a subprocess. A sampler reads the resident memory of each process of
the command's tree every 0.2 s (psutil): the peak of each process (the command, the training
child) is reported. Per-stage times come from the Dagster instance (step stats); rows per
second is the rows a stage read over its time (the run's days for `raw`/`validated`/`features`,
the window for `training_set`, the training rows times the epochs for `trained`).

**Cost growth.** For each history H, a fresh home with H days of `--history-rows` rows landed
and ingested (not timed), then one more day landed and `ingest` timed: the daily retrain with
H days of history. With a fixed window its cost should not grow with H.

Results go to stdout and to the `scale` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml
from common import ROOT, publish, run_context

from ml_platform.specs.model_spec import SPEC_DIR
from ml_platform.tracking.server import MlflowServer, start_mlflow_server

SECTION = "scale"
GIB = 2**30
BUDGET_RETRAIN_S, BUDGET_PEAK = 300.0, 6 * GIB
START = dt.date(2024, 1, 1)  # the shipped spec's first partition


@dataclass
class Command:
    """One CLI command run as a subprocess: its wall time and each process's peak memory."""

    argv: list[str]
    wall_s: float = 0.0
    returncode: int = 0
    peaks: dict[str, int] = field(default_factory=dict)  # "name pid" -> peak RSS (bytes)
    output: str = ""

    @property
    def peak(self) -> int:
        return max(self.peaks.values(), default=0)


def _label(proc: psutil.Process) -> str:
    """A short name for a process of the command's tree."""
    try:
        line = " ".join(proc.cmdline())
    except psutil.Error:
        return "?"
    if "ml_platform.compute.entrypoint" in line or "entrypoint" in line:
        return "trainer (child process)"
    if "ml_platform.cli" in line or "ml-platform" in line:
        return "ml-platform " + next((w for w in ("ingest", "simulate") if w in line), "")
    return Path(proc.cmdline()[0]).name if proc.cmdline() else "?"


def run(argv: list[str], env: dict[str, str], timeout: float) -> Command:
    """Run `ml-platform argv` and sample its process tree's memory until it exits."""
    cmd = Command(argv)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ml_platform.cli", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                key = f"{_label(p)} {p.pid}"
                cmd.peaks[key] = max(cmd.peaks.get(key, 0), rss)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    done.set()
    sampler.join()
    cmd.wall_s, cmd.returncode, cmd.output = time.perf_counter() - t0, proc.returncode, out
    if proc.returncode != 0:
        print(out[-2000:], err[-4000:], file=sys.stderr)
    return cmd


@dataclass
class Home:
    path: Path
    env: dict[str, str]
    server: MlflowServer

    def close(self) -> None:
        self.server.stop()
        shutil.rmtree(self.path, ignore_errors=True)


def make_home(rows_per_day: int) -> Home:
    """A fresh home with only listing_price (rows per day changed) and its own MLflow server."""
    path = Path(tempfile.mkdtemp(prefix="ml_platform_scale_"))
    (path / "specs").mkdir()
    spec = yaml.safe_load((SPEC_DIR / "listing_price.yaml").read_text())
    spec["dataset"]["rows_per_day"] = rows_per_day
    (path / "specs" / "listing_price.yaml").write_text(yaml.safe_dump(spec))
    server = start_mlflow_server(store=path / "mlflow-bench")
    server.wait_ready(timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in {"DAGSTER_HOME", "ML_PLATFORM_PROFILE"}}
    env.update(ML_PLATFORM_HOME=str(path), ML_PLATFORM_SPEC_DIR=str(path / "specs"),
               MLFLOW_TRACKING_URI=server.url, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return Home(path, env, server)


def land(home: Home, first: dt.date, days: int) -> Command:
    return run(["simulate", "--dataset", "bookings", "--start", first.isoformat(),
                "--days", str(days)], home.env, timeout=3600)


def ingest(home: Home) -> Command:
    cmd = run(["ingest", "--dataset", "bookings", "--json"], home.env, timeout=3600)
    if cmd.returncode != 0:
        raise SystemExit(f"ingest failed in {home.path}")
    return cmd


def stages(home: Home, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """Per stage of the runs `run_ids`: seconds and the rows it read."""
    os.environ["DAGSTER_HOME"] = str(home.path / "dagster")
    import dagster as dg

    out: dict[str, dict[str, float]] = {}
    with dg.DagsterInstance.get() as instance:
        for run_id in run_ids:
            rows: dict[str, float] = {}
            for record in instance.get_records_for_run(
                    run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
                mat = record.asset_materialization
                if mat is None:
                    continue
                meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
                stage = mat.asset_key.path[-1]
                if stage == "raw":
                    rows[stage] = float(meta.get("rows", 0))
                elif stage == "features":
                    rows[stage] = float(meta.get("rows", 0))
                    rows["validated"] = rows[stage]
                elif stage == "training_set":
                    rows[stage] = float(sum(meta.get(f"rows_{s}", 0) for s in ("train", "valid", "test")))
                    rows["trained"] = float(meta.get("rows_train", 0))
            for s in instance.get_run_step_stats(run_id):
                if s.start_time is None or s.end_time is None:
                    continue
                stage = s.step_key.rsplit("__", 1)[-1]
                entry = out.setdefault(stage, {"seconds": 0.0, "rows": 0.0})
                entry["seconds"] += s.end_time - s.start_time
                entry["rows"] += rows.get(stage, 0.0)
    epochs = yaml.safe_load((home.path / "specs" / "listing_price.yaml").read_text())["training"]["epochs"]
    if "trained" in out:
        out["trained"]["rows"] *= epochs
    return out


def seed_scale(days: int, rows_per_day: int) -> dict[str, object]:
    home = make_home(rows_per_day)
    try:
        landed = land(home, START, days)
        first = ingest(home)
        first_report = json.loads(first.output)[0]  # one report per dataset
        one_more = land(home, START + dt.timedelta(days=days), 1)
        daily = ingest(home)
        daily_report = json.loads(daily.output)[0]
        return {
            "landed": landed, "first": first, "daily": daily, "one_more": one_more,
            "first_stages": stages(home, first_report["run_ids"]),
            "daily_stages": stages(home, daily_report["run_ids"]),
            "promoted": [first_report["promoted"], daily_report["promoted"]],
        }
    finally:
        home.close()


def growth(history: int, rows_per_day: int) -> tuple[Command, dict[str, dict[str, float]]]:
    """The daily retrain after `history` days: the command and its stages."""
    home = make_home(rows_per_day)
    try:
        land(home, START, history)
        ingest(home)
        land(home, START + dt.timedelta(days=history), 1)
        daily = ingest(home)
        return daily, stages(home, json.loads(daily.output)[0]["run_ids"])
    finally:
        home.close()


# -- report -------------------------------------------------------------------------------------

def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def _stage_table(per_stage: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| stage | seconds | rows read | rows/s |", "|---|---:|---:|---:|"]
    for stage, v in per_stage.items():
        rate = f"{v['rows'] / v['seconds']:,.0f}" if v["rows"] and v["seconds"] else "-"
        lines.append(f"| {stage} | {v['seconds']:.1f} | {v['rows']:,.0f} | {rate} |")
    return lines


def _peaks(cmd: Command) -> str:
    by_name: dict[str, int] = {}
    for key, rss in cmd.peaks.items():
        name = key.rsplit(" ", 1)[0]
        by_name[name] = max(by_name.get(name, 0), rss)
    return ", ".join(f"{n} {_gib(v)}" for n, v in sorted(by_name.items(), key=lambda x: -x[1]))


def render(a: argparse.Namespace, seeds: list[dict[str, object]],
           grown: dict[int, list[Command]],
           grown_stages: dict[int, dict[str, dict[str, float]]]) -> str:
    lines = ["## Scale: the seed's sizes end to end, and cost growth", "", *run_context(__file__), ""]
    if seeds:
        daily = statistics.median(s["daily"].wall_s for s in seeds)  # type: ignore[attr-defined]
        peak = max(max(s["daily"].peak, s["first"].peak) for s in seeds)  # type: ignore[attr-defined]
        first = statistics.median(s["first"].wall_s for s in seeds)  # type: ignore[attr-defined]
        s0 = seeds[0]
        lines += [
            f"### listing_price, {a.days} days x {a.rows_per_day:,} bookings "
            f"({a.days * a.rows_per_day:,} rows landed), shipped hyper-parameters",
            "",
            f"- first run, landed data to production (`ingest`): median {first:.1f} s over "
            f"{len(seeds)} run(s)",
            f"- daily retrain (one more day landed, `ingest`): median **{daily:.1f} s** "
            f"(budget {BUDGET_RETRAIN_S:.0f} s: {daily / BUDGET_RETRAIN_S:.2f}x)",
            f"- peak memory of any one process: **{_gib(peak)}** (budget 6 GiB: "
            f"{peak / BUDGET_PEAK:.2f}x); first run: {_peaks(s0['first'])}; daily: "  # type: ignore[arg-type]
            f"{_peaks(s0['daily'])}",  # type: ignore[arg-type]
            f"- landing (`simulate`, not part of the budget): {s0['landed'].wall_s:.1f} s",  # type: ignore[attr-defined]
            "",
            "First run, per stage (the first home):", "",
            *_stage_table(s0["first_stages"]),  # type: ignore[arg-type]
            "", "Daily retrain, per stage:", "",
            *_stage_table(s0["daily_stages"]),  # type: ignore[arg-type]
            "",
        ]
    if grown:
        med = {h: statistics.median(c.wall_s for c in cmds) for h, cmds in grown.items()}
        base = med[min(med)]
        lines += [f"### Cost growth: daily retrain with H days of history ({a.history_rows:,} "
                  "rows a day)", "", "| history (days) | daily retrain, median (s) | runs | "
                  f"vs {min(med)} days |", "|---:|---:|---|---:|"]
        for h in sorted(med):
            runs = ", ".join(f"{c.wall_s:.1f}" for c in grown[h])
            lines.append(f"| {h} | {med[h]:.1f} | {runs} | {med[h] / base:.2f}x |")
        lines += ["", f"Budget: day {max(med)} costs at most 1.2x day {min(med)}: measured "
                  f"{med[max(med)] / base:.2f}x ({med[max(med)] / base / 1.2:.2f} of the budget).",
                  "", "Per stage of the daily retrain (seconds, the last run of each history):", ""]
        names = [s for s in next(iter(grown_stages.values())) if not s.startswith("freshness")]
        lines += ["| history (days) | " + " | ".join(names) + " |",
                  "|---:|" + "---:|" * len(names)]
        for h in sorted(grown_stages):
            cells = [f"{grown_stages[h].get(s, {}).get('seconds', 0):.1f}" for s in names]
            lines.append(f"| {h} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=170_000)
    parser.add_argument("--histories", default="30,180,365")
    parser.add_argument("--history-rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed-repeats", type=int, default=1)
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    a = parser.parse_args()
    grown: dict[int, list[Command]] = {}
    grown_stages: dict[int, dict[str, dict[str, float]]] = {}
    if not a.skip_growth:
        for _ in range(a.repeats):
            for h in (int(x) for x in a.histories.split(",")):
                daily, grown_stages[h] = growth(h, a.history_rows)
                grown.setdefault(h, []).append(daily)
                print(f"history {h}: daily retrain {grown[h][-1].wall_s:.1f} s", flush=True)
    seeds: list[dict[str, object]] = []
    for _ in range(0 if a.skip_seed else a.seed_repeats):
        seeds.append(seed_scale(a.days, a.rows_per_day))
        print(f"seed scale: first run {seeds[-1]['first'].wall_s:.1f} s, daily retrain "  # type: ignore[attr-defined]
              f"{seeds[-1]['daily'].wall_s:.1f} s, peaks {_peaks(seeds[-1]['daily'])}",  # type: ignore[arg-type]
              flush=True)
    publish(SECTION, render(a, seeds, grown, grown_stages), write=not a.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
