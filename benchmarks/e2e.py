"""Benchmark: `ml-platform demo` end to end, where its time goes, and the retrain inner loop.

    .venv/bin/python benchmarks/e2e.py [--repeats 3] [--plain 1] [--no-write]

Each repetition makes a fresh ML_PLATFORM_HOME (a temp dir) and runs, as subprocesses of the
installed CLI with MLFLOW_TRACKING_URI unset (so each starts, and at exit stops, its own
MLflow server on a free port):

1. `ml-platform demo`            fresh home: lands 30 days, trains, registers, promotes;
2. `ml-platform demo`            again, nothing changed (first `--plain` repetitions only);
3. `ml-platform demo --retrain`  the inner loop after a code change: landed data reused,
                                 a new training forced.

Wall time is taken around the subprocess. Per-step times come from the Dagster instance under
`<home>/dagster` afterwards (run stats, step stats and the event log); the stdout lines of the
demo are timestamped as they arrive and the MLflow server's /health is polled, which splits the
rest of the wall time into startup, landing, waiting for MLflow and so on. Results go to stdout
and to the `e2e` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from common import ROOT, publish, run_context

from ml_platform.tracking.server import free_port, is_healthy

SECTION = "e2e"


# ---------------------------------------------------------------------------------------------
# one demo invocation


@dataclass
class Step:
    key: str
    start: float
    end: float
    first_output: float | None
    attempts: int

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def code_seconds(self) -> float:
        """STEP_START to the first output event: the asset function and its resources."""
        return (self.first_output or self.end) - self.start


@dataclass
class DagsterRun:
    """Every Dagster run one demo made (one per model), taken together."""

    run_ids: list[str]
    status: str  # SUCCESS when every run succeeded
    created: float  # first event of the first run (materialization planning)
    start: float  # run stats of the first run: PIPELINE_START
    end: float  # run stats of the last run: PIPELINE_SUCCESS / FAILURE
    span_s: float  # sum over runs of PIPELINE_START -> end
    total_s: float  # sum over runs of first event -> end
    steps: list[Step]
    marks: dict[str, dict[str, float]]  # per `trained` step: timestamps inside it
    trained: dict[str, dict[str, object]]  # per `trained` step: its materialization metadata

    @property
    def steps_s(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def code_s(self) -> float:
        return sum(s.code_seconds for s in self.steps)


@dataclass
class Demo:
    kind: str  # fresh | plain | retrain
    wall_s: float
    returncode: int
    t0: float
    t_end: float
    log: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    server_ready: float | None = None
    server_left_running: bool = False
    landing: tuple[float, float] | None = None  # first and last landed file written
    run: DagsterRun | None = None
    rep: int = 0  # which fresh home (1-based)

    def line_time(self, pattern: str) -> float | None:
        rx = re.compile(pattern)
        return next((t for t, text in self.lines if rx.search(text)), None)

    def line_match(self, pattern: str) -> re.Match[str] | None:
        rx = re.compile(pattern)
        return next((m for _, text in self.lines if (m := rx.search(text))), None)

    @property
    def printed_total(self) -> float | None:
        m = self.line_match(r"demo finished in ([\d.]+)s")
        return float(m.group(1)) if m else None

    @property
    def production_version(self) -> str:
        m = self.line_match(r"production is v(\d+)")
        return m.group(1) if m else "?"

    def timeline(self) -> dict[str, float | None]:
        """Consecutive segments of the wall time, in seconds (None where a mark is missing)."""
        finished = self.line_time(r"demo finished in")
        cmd_start = finished - self.printed_total if finished and self.printed_total else None
        landed_line = self.line_time(r"^\S+: \d+ day\(s\) landed")
        run = self.run

        def span(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else b - a

        first_land = self.landing[0] if self.landing else None
        last_land = self.landing[1] if self.landing else None
        return {
            "python start + `ml_platform.cli` import": span(self.t0, cmd_start),
            "imports, spawn MLflow, until the first day lands": span(cmd_start, first_land),
            "landing days (first to last file written)": span(first_land, last_land),
            "imports + landing check (nothing to land)": (
                span(cmd_start, landed_line) if self.landing is None else None),
            "until `... day(s) landed` is printed": span(last_land, landed_line),
            "register partitions, wait for MLflow, build defs, create run": span(
                landed_line, run.created if run else None),
            "Dagster run: planning events before PIPELINE_START": (
                run.total_s - run.span_s if run else None),
            "Dagster run: PIPELINE_START to end": run.span_s if run else None,
            "between runs: lineage of the models before the last": (
                run.end - run.created - run.total_s if run and len(run.run_ids) > 1 else None),
            "lineage lookup and printing": span(run.end if run else None, finished),
            "stop MLflow server, interpreter exit": span(finished, self.t_end),
        }

    @property
    def mlflow_ready_s(self) -> float | None:
        """MLflow server ready, seconds after the CLI's `cmd_demo` started (which spawns it)."""
        finished = self.line_time(r"demo finished in")
        if self.server_ready is None or finished is None or self.printed_total is None:
            return None
        return self.server_ready - (finished - self.printed_total)


def cli() -> str:
    sibling = Path(sys.executable).parent / "ml-platform"
    found = str(sibling) if sibling.exists() else shutil.which("ml-platform")
    if not found:
        raise SystemExit("ml-platform is not installed: run `make setup` first")
    return found


def run_demo(kind: str, home: Path, args: list[str], timeout: float) -> Demo:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"MLFLOW_TRACKING_URI", "DAGSTER_HOME", "ML_PLATFORM_PROFILE"}}
    env.update(ML_PLATFORM_HOME=str(home), PYTHONUNBUFFERED="1")
    log = home / f"bench-{kind}.log"
    command = [cli(), "demo", "--mlflow-port", str(port), *args]
    ready: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            if is_healthy(f"http://127.0.0.1:{port}", timeout=0.5):
                ready.append(time.time())
                return
            done.wait(0.1)

    t0, p0 = time.time(), time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    # Ctrl-C semantics on overrun: the demo's `finally` stops its MLflow server.
    killer = threading.Timer(timeout, proc.send_signal, args=(signal.SIGINT,))
    killer.start()
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    with log.open("w") as fh:
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            fh.write(line)
    returncode = proc.wait()
    wall, t_end = time.perf_counter() - p0, time.time()
    killer.cancel()
    done.set()
    poller.join()
    demo = Demo(kind, wall, returncode, t0, t_end, log, lines,
                server_ready=ready[0] if ready else None,
                server_left_running=is_healthy(f"http://127.0.0.1:{port}", timeout=0.5))
    written = sorted(p.stat().st_mtime for p in (home / "landing").rglob("*.parquet")
                     if p.stat().st_mtime >= t0)
    demo.landing = (written[0], written[-1]) if written else None
    demo.run = dagster_run(home, since=t0)
    return demo


def dagster_run(home: Path, since: float) -> DagsterRun | None:
    """The runs started after `since` in the instance under `<home>/dagster`, taken together."""
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    import dagster as dg

    found: list[tuple[float, float, float, str, str]] = []  # created, start, end, id, status
    steps: list[Step] = []
    marks: dict[str, dict[str, float]] = {}
    trained: dict[str, dict[str, object]] = {}
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs(limit=50):
            stats = instance.get_run_stats(run.run_id)
            if not stats.start_time or stats.start_time < since:
                continue
            logs = instance.all_logs(run.run_id)
            first_output: dict[str, float] = {}
            for entry in logs:
                event, key = entry.dagster_event, entry.step_key or ""
                if event is not None and event.event_type_value == "STEP_OUTPUT":
                    first_output.setdefault(key, entry.timestamp)
                mat = entry.asset_materialization
                if mat is not None and mat.asset_key.path[-1] == "trained":
                    trained[key] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
                if key.endswith("__trained") and event is None:
                    message, at = entry.user_message, entry.timestamp
                    mark = marks.setdefault(key, {})
                    if "successfully opened dagster pipes" in message:
                        mark.setdefault("pipes_opened", at)
                    elif re.match(r"epoch \d+/\d+", message):
                        mark.setdefault("first_epoch", at)
                        mark["last_epoch"] = at
            for s in instance.get_run_step_stats(run.run_id):
                if s.start_time is None or s.end_time is None:
                    continue
                step = Step(s.step_key, s.start_time, s.end_time, first_output.get(s.step_key),
                            s.attempts or 1)
                steps.append(step)
                if step.key.endswith("__trained"):
                    marks.setdefault(step.key, {}).update(
                        start=step.start, output=step.first_output or step.end)
            end = stats.end_time or stats.start_time
            found.append((logs[0].timestamp if logs else stats.start_time, stats.start_time, end,
                          run.run_id, run.status.value))
    if not found:
        return None
    found.sort()
    bad = [status for *_, status in found if status != "SUCCESS"]
    steps.sort(key=lambda s: s.start)
    return DagsterRun(
        run_ids=[r[3] for r in found], status=bad[0] if bad else "SUCCESS",
        created=found[0][0], start=found[0][1], end=max(r[2] for r in found),
        span_s=sum(r[2] - r[1] for r in found), total_s=sum(r[2] - r[0] for r in found),
        steps=steps, marks=marks, trained=trained,
    )


# ---------------------------------------------------------------------------------------------
# report


def med(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, unit: str = "s", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} {unit}".rstrip()


def runs_of(demos: list[Demo], get: Callable[[Demo], float | None]) -> str:
    return ", ".join(fmt(get(d), "") for d in demos)


def pct(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else 100 * part / whole


def meta(demo: Demo, key: str) -> str:
    """`key` of every `trained` materialization of the demo (one per model)."""
    if not demo.run or not demo.run.trained:
        return "n/a"
    values = [m.get(key) for m in demo.run.trained.values()]
    return ", ".join("n/a" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                     for v in values)


def changed_code_note(demos: list[Demo]) -> list[str]:
    """A warning when the training code changed while the benchmark ran (other edits in the
    checkout): then a plain second demo retrains and its time is not that of a no-op."""
    per_model: dict[str, set[str]] = {}
    for d in demos:
        for model, m in (d.run.trained.items() if d.run else ()):
            per_model.setdefault(model, set()).add(str(m.get("code_version")))
    if all(len(v) <= 1 for v in per_model.values()):
        return []
    versions = sorted(v for vs in per_model.values() for v in vs)
    return [f"**The training code version changed during the benchmark ({', '.join(versions)})**: "
            "the checkout was edited while it ran, so a plain demo after such a change trained "
            "again instead of reusing the run; rerun on a quiet checkout for clean numbers.", ""]


def overhead_parts(d: Demo) -> dict[str, float]:
    """The fresh demo's time outside the steps, split into its known parts."""
    t = {k: v or 0.0 for k, v in d.timeline().items()}
    # The demo does not wait for the MLflow server: it boots while raw → training_set run, and
    # a step that needs it before it answers waits inside the step (step time, not overhead).
    parts = {
        "stopping the MLflow server and exiting": t["stop MLflow server, interpreter exit"],
        "Python start and imports up to the first landed day": (
            t["python start + `ml_platform.cli` import"]
            + t["imports, spawn MLflow, until the first day lands"]),
        "landing": t["landing days (first to last file written)"],
        "Dagster planning events and gaps between steps": (
            t["Dagster run: planning events before PIPELINE_START"]
            + (d.run.span_s - d.run.steps_s if d.run else 0.0)),
    }
    overhead = d.wall_s - (d.run.steps_s if d.run else 0.0)
    parts["registering partitions, building the definitions, creating the run, lineage"] = (
        overhead - sum(parts.values()))
    return parts


def overhead_note(fresh: list[Demo], overhead: float | None) -> list[str]:
    if overhead is None or not fresh:
        return []
    per_demo = [overhead_parts(d) for d in fresh]
    text = ", ".join(f"{name} {med(p[name] for p in per_demo):.1f} s" for name in per_demo[0])
    return [f"Of the {overhead:.1f} s of the fresh demo outside the steps (medians): {text}.", ""]


def render(a: argparse.Namespace, fresh: list[Demo], plain: list[Demo],
           retrain: list[Demo]) -> str:
    wall = med(d.wall_s for d in fresh)
    steps = med(d.run.steps_s for d in fresh if d.run)
    overhead = med(d.wall_s - d.run.steps_s for d in fresh if d.run)
    overhead_pct = med(pct(d.wall_s - d.run.steps_s, d.wall_s) for d in fresh if d.run)
    run_span = med(d.run.span_s for d in fresh if d.run)
    run_over = med(d.run.span_s - d.run.steps_s for d in fresh if d.run)
    run_over_pct = med(pct(d.run.span_s - d.run.steps_s, d.run.span_s)
                       for d in fresh if d.run)
    run_total = med(d.run.total_s for d in fresh if d.run)
    bookkeeping = med(d.run.total_s - d.run.code_s for d in fresh if d.run)
    bookkeeping_pct = med(pct(d.run.total_s - d.run.code_s, d.run.total_s)
                          for d in fresh if d.run)
    inner = med(d.wall_s for d in retrain)
    plain_wall = med(d.wall_s for d in plain)
    vs_baseline = f"{inner / a.baseline:.3f} ({a.baseline / inner:.0f}x faster)" if inner else "n/a"

    def ok(value: float | None, budget: float) -> str:
        if value is None:
            return "n/a"
        return f"{value / budget:.2f} ({'within' if value <= budget else 'OVER'})"

    n = len(fresh)
    lines = [
        "## End to end: `ml-platform demo`",
        "",
        f"`ml-platform demo` as a subprocess of the installed CLI, {n} times, each on a fresh "
        "`ML_PLATFORM_HOME` (temp dir) with `MLFLOW_TRACKING_URI` unset, so each run starts its "
        "own MLflow server (SQLite store) on a free port and stops it at exit; then, on the same "
        f"home, a plain second `demo` (first {len(plain)} home(s)) and `demo --retrain` (the inner "
        "loop). Step times are STEP_START → STEP_SUCCESS from the Dagster instance under "
        "`<home>/dagster`.",
        "",
        *run_context(__file__, f"dagster {version('dagster')}, mlflow {version('mlflow')}"),
        "",
        "| measure (median) | runs | value | budget / baseline | ratio |",
        "| --- | --- | --- | --- | --- |",
        f"| fresh `demo` wall time | {runs_of(fresh, lambda d: d.wall_s)} | **{fmt(wall)}** "
        f"| ≤ {a.budget_demo:g} s | {ok(wall, a.budget_demo)} |",
        "| sum of step times (asset compute) | "
        f"{runs_of(fresh, lambda d: d.run and d.run.steps_s)} | {fmt(steps)} | | |",
        "| overhead = wall - steps | "
        f"{runs_of(fresh, lambda d: d.run and d.wall_s - d.run.steps_s)} | {fmt(overhead)} "
        f"= **{fmt(overhead_pct, '%', 0)}** of wall | ≤ {a.budget_overhead:g} % "
        f"| {ok(overhead_pct, a.budget_overhead)} |",
        f"| Dagster run, PIPELINE_START → end | "
        f"{runs_of(fresh, lambda d: d.run and d.run.span_s)} | {fmt(run_span)} | | |",
        f"| overhead inside the run = run - steps | "
        f"{runs_of(fresh, lambda d: d.run and d.run.span_s - d.run.steps_s)} "
        f"| {fmt(run_over, digits=2)} = {fmt(run_over_pct, '%', 1)} of the run "
        f"| ≤ {a.budget_overhead:g} % | {ok(run_over_pct, a.budget_overhead)} |",
        f"| Dagster bookkeeping: run created → end, minus asset code "
        f"| {runs_of(fresh, lambda d: d.run and d.run.total_s - d.run.code_s)} "
        f"| {fmt(bookkeeping)} = {fmt(bookkeeping_pct, '%', 0)} of {fmt(run_total)} | | |",
        f"| inner loop: `demo --retrain` wall time | {runs_of(retrain, lambda d: d.wall_s)} "
        f"| **{fmt(inner)}** | ≤ {a.budget_inner:g} s | {ok(inner, a.budget_inner)} |",
        f"| inner loop vs the seed's image build | | {fmt(inner)} | ~{a.baseline:g} s "
        f"| {vs_baseline} |",
        f"| plain second `demo` (nothing changed) | {runs_of(plain, lambda d: d.wall_s)} "
        f"| {fmt(plain_wall)} | | |",
        "",
        "Every demo: the training code version it ran, whether `trained` reused an MLflow run, "
        "and the production version it left:",
        "",
        "| home | demo | wall | code version | reused MLflow run | production |",
        "| --- | --- | --- | --- | --- | --- |",
        *(f"| {d.rep} | {d.kind} | {d.wall_s:.1f} s | {meta(d, 'code_version')} "
          f"| {meta(d, 'reused_run')} | v{d.production_version} |"
          for d in sorted(fresh + plain + retrain, key=lambda d: (d.rep, d.t0))),
        "",
        *changed_code_note(fresh + plain + retrain),
        "### Where the wall time goes (median seconds)",
        "",
        "| segment | fresh `demo` | plain `demo` | `demo --retrain` |",
        "| --- | --- | --- | --- |",
    ]
    groups = [fresh, plain, retrain]
    segments = list(fresh[0].timeline())
    for seg in segments:
        vals = [med(d.timeline()[seg] for d in g) if g else None for g in groups]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {seg} | " + " | ".join(fmt(v, '', 2) for v in vals) + " |")
    lines.append("| **wall** | " + " | ".join(
        fmt(med(d.wall_s for d in g), '', 2) if g else "n/a" for g in groups) + " |")
    lines += [
        "",
        "MLflow server answering /health, seconds after `cmd_demo` spawned it: "
        + ", ".join(f"{name} {fmt(med(d.mlflow_ready_s for d in g))}"
                    for name, g in zip(("fresh", "plain", "retrain"), groups, strict=True) if g)
        + "; after landing, the steps that need no MLflow run while it boots.",
        "",
        *overhead_note(fresh, overhead),
        "### Time per asset step (median seconds)",
        "",
        "Step time is STEP_START → STEP_SUCCESS; *asset code* is STEP_START → the step's first "
        "output event (the rest is Dagster writing materialization / check events).",
        "",
        "| step | fresh: step | fresh: asset code | plain: step | retrain: step |",
        "| --- | --- | --- | --- | --- |",
    ]
    keys = [s.key for s in fresh[0].run.steps] if fresh[0].run else []

    def step_med(group: list[Demo], key: str, code: bool = False) -> float | None:
        found = [next((s for s in d.run.steps if s.key == key), None) for d in group if d.run]
        return med((s.code_seconds if code else s.seconds) for s in found if s)

    for key in keys:
        lines.append(
            f"| `{key}` | {fmt(step_med(fresh, key), '', 2)} | "
            f"{fmt(step_med(fresh, key, code=True), '', 2)} | "
            f"{fmt(step_med(plain, key), '', 2) if plain else 'n/a'} | "
            f"{fmt(step_med(retrain, key), '', 2) if retrain else 'n/a'} |"
        )
    lines.append(
        f"| **sum** | {fmt(steps, '', 2)} "
        f"| {fmt(med(d.run.code_s for d in fresh if d.run), '', 2)}"
        f" | {fmt(med(d.run.steps_s for d in plain if d.run), '', 2) if plain else 'n/a'}"
        f" | {fmt(med(d.run.steps_s for d in retrain if d.run), '', 2) if retrain else 'n/a'} |"
    )

    def trained_part(group: list[Demo], key: str, a_key: str, b_key: str) -> float | None:
        return med(d.run.marks[key][b_key] - d.run.marks[key][a_key] for d in group
                   if d.run and {a_key, b_key} <= set(d.run.marks.get(key, {})))

    parts = [
        ("step start → training process opened Dagster Pipes (MLflow run created, child "
         "started, imports)", "start", "pipes_opened"),
        ("→ first epoch logged (torch import, data load, epoch 1)", "pipes_opened", "first_epoch"),
        ("→ last epoch logged (remaining epochs)", "first_epoch", "last_epoch"),
        ("→ step output (model logged to MLflow, child exits)", "last_epoch", "output"),
    ]
    for key in [k for k in keys if k.endswith("__trained")]:
        lines += [
            "",
            f"Inside `{key}` (from its log events):",
            "",
            "| part of the step | fresh | retrain |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {label} | {fmt(trained_part(fresh, key, x, y), '', 2)} | "
                  f"{fmt(trained_part(retrain, key, x, y), '', 2)} |" for label, x, y in parts]
    leaks = sum(d.server_left_running for d in fresh + plain + retrain)
    lines += [
        "",
        "Each demo stopped its MLflow server at exit." if not leaks else
        f"**{leaks} demo(s) left their MLflow server running after exit.**",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh homes: fresh demo + retrain each (medians reported)")
    parser.add_argument("--plain", type=int, default=1,
                        help="in how many of those homes to time a plain second demo")
    parser.add_argument("--budget-demo", type=float, default=60.0, help="seconds")
    parser.add_argument("--budget-overhead", type=float, default=20.0, help="percent of wall")
    parser.add_argument("--budget-inner", type=float, default=30.0, help="seconds")
    parser.add_argument("--baseline", type=float, default=600.0,
                        help="the seed's inner loop: ~10 min image build (seconds)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per demo, seconds")
    parser.add_argument("--model", action="append", default=[],
                        help="passed to `ml-platform demo --model` (repeatable; default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the temp homes")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True,
                        help="update docs/benchmarks.md (default: yes)")
    a = parser.parse_args()

    fresh: list[Demo] = []
    plain: list[Demo] = []
    retrain: list[Demo] = []
    for i in range(a.repeats):
        home = Path(tempfile.mkdtemp(prefix="ml_platform_bench_e2e_"))
        models = [arg for m in a.model for arg in ("--model", m)]
        plan = [("fresh", models, fresh)]
        if i < a.plain:
            plan.append(("plain", models, plain))
        plan.append(("retrain", [*models, "--retrain"], retrain))
        for kind, extra, into in plan:
            demo = run_demo(kind, home, extra, a.timeout)
            demo.rep = i + 1
            r = demo.run
            print(f"[{i + 1}/{a.repeats}] {kind:7s} wall {demo.wall_s:5.1f}s  rc {demo.returncode}"
                  f"  steps {fmt(r and r.steps_s)}  run {fmt(r and r.span_s)}"
                  f"  production v{demo.production_version}  ({home})", flush=True)
            if demo.returncode != 0 or r is None or r.status != "SUCCESS":
                tail = "\n".join(text for _, text in demo.lines[-40:])
                raise SystemExit(f"{kind} demo failed (rc {demo.returncode}, run "
                                 f"{r and r.status}); log: {demo.log}\n{tail}")
            into.append(demo)
        if not a.keep:
            shutil.rmtree(home, ignore_errors=True)

    body = render(a, fresh, plain, retrain)
    publish(SECTION, body, write=a.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
