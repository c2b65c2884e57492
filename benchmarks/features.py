"""Benchmark: the bookings feature build over 5 million rows.

    .venv/bin/python benchmarks/features.py [--rows 5000000] [--runs 3] [--no-write]

Generates the input once (days of `generate_bookings`, tiled; not timed), stores it as Parquet
the way the lake does, then times `build_features("bookings", ...)` in N fresh processes: each
loads the table and calls `build_features` twice. The first call ("cold") is what the
`listing_price/features` asset pays (it builds once per run); the second ("warm") reuses memory
the process already has. Peak memory is the process's VmHWM during the first call, reset after
loading. Results go to stdout and to the `features` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from common import ROOT, machine, publish, run_context

SECTION = "features"
KEY, DATE, TARGET = "booking_id", "booking_date", "nightly_price"


# ---------------------------------------------------------------------------------------------
# child: one fresh process, two timed calls


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(path: str) -> dict[str, float]:
    import pandas as pd

    from ml_platform.ml.features import build_features

    frame = pd.read_parquet(path)
    rss_before = _status_kib("VmRSS")
    reset = _reset_peak()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    table = build_features("bookings", frame, key=KEY, date_column=DATE, target=TARGET)
    cold = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    peak = _status_kib("VmHWM") if reset else after.ru_maxrss
    shape = table.shape
    del table
    before_warm = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    table = build_features("bookings", frame, key=KEY, date_column=DATE, target=TARGET)
    warm = time.perf_counter() - started
    last = resource.getrusage(resource.RUSAGE_SELF)
    out_bytes = int(table.memory_usage(deep=True).sum())
    return {
        "cold_s": cold, "warm_s": warm,
        "user_s": after.ru_utime - usage.ru_utime, "sys_s": after.ru_stime - usage.ru_stime,
        "minor_faults": after.ru_minflt - usage.ru_minflt,
        "warm_user_s": last.ru_utime - before_warm.ru_utime,
        "warm_sys_s": last.ru_stime - before_warm.ru_stime,
        "rss_before_gib": rss_before / 2**20, "peak_gib": peak / 2**20,
        "peak_extra_gib": (peak - rss_before) / 2**20,
        "input_gib": int(frame.memory_usage(deep=True).sum()) / 2**30,
        "output_gib": out_bytes / 2**30, "rows": shape[0], "columns": shape[1],
    }


# ---------------------------------------------------------------------------------------------
# parent


def make_input(rows: int, days: int, unique_days: int, path: Path) -> tuple[float, int]:
    """`rows` bookings over `days` days: `unique_days` days from `generate_bookings`, tiled with
    the dates shifted and the keys prefixed, so every key is unique and every day distinct."""
    import pandas as pd

    from ml_platform.simulation.bookings import generate_bookings

    started = time.perf_counter()
    first = dt.date(2026, 1, 1)
    per_day = -(-rows // days)
    base = pd.concat(
        [generate_bookings(first + dt.timedelta(days=i), per_day) for i in range(unique_days)],
        ignore_index=True,
    )
    tiles = []
    for k in range(-(-days // unique_days)):
        tile = base.copy()
        if k:
            shift = dt.timedelta(days=k * unique_days)
            tile[DATE] = tile[DATE].map({d: d + shift for d in base[DATE].unique()})
            tile[KEY] = f"t{k}-" + tile[KEY]
        tiles.append(tile)
    frame = pd.concat(tiles, ignore_index=True).iloc[:rows]
    del base, tiles
    frame.to_parquet(path, index=False)
    return time.perf_counter() - started, len(frame)


def run_child(path: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(args: argparse.Namespace, runs: list[dict[str, float]], gen_s: float,
           rows: int) -> str:
    m = machine()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    cold = ", ".join(f"{r['cold_s']:.2f}" for r in runs)
    warm = ", ".join(f"{r['warm_s']:.2f}" for r in runs)
    cpu_cold = statistics.median(r["user_s"] + r["sys_s"] for r in runs)
    verdict = "within" if med["cold_s"] <= args.budget else "OVER"
    mem_total = float(m["memory"].split()[0])
    lines = [
        "## Feature build: 5 million booking rows",
        "",
        f"`build_features(\"bookings\", frame, key=\"{KEY}\", date_column=\"{DATE}\", "
        f"target=\"{TARGET}\")` over {rows:,} synthetic rows, {args.days} days with unique keys "
        f"({min(args.unique_days, args.days)} days of `generate_bookings`, tiled with shifted "
        "dates and prefixed keys), read back from Parquet as the `features` asset reads the "
        f"lake; making the input took {gen_s:.0f} s and is not measured. Each run is a fresh "
        "process that calls the builder twice: *cold* (first call in the process, what the "
        "asset pays) and *warm* (second call).",
        "",
        *run_context(__file__, f"pandas {version('pandas')}, numpy {version('numpy')}"),
        "",
        f"| measure (median of {len(runs)}) | value | budget | ratio to budget |",
        "| --- | --- | --- | --- |",
        f"| build, cold (runs: {cold} s) | **{med['cold_s']:.2f} s** | ≤ {args.budget:g} s "
        f"| {med['cold_s'] / args.budget:.2f} ({verdict}) |",
        f"| build, warm (runs: {warm} s) | {med['warm_s']:.2f} s | ≤ {args.budget:g} s "
        f"| {med['warm_s'] / args.budget:.2f} |",
        f"| throughput, cold | {rows / med['cold_s'] / 1e6:.2f} M rows/s | | |",
        f"| CPU time of the cold call, user + sys ({med['user_s']:.2f} s + {med['sys_s']:.2f} s;"
        f" less sensitive to other load than wall time) | {cpu_cold:.2f} s | ≤ {args.budget:g} s "
        f"| {cpu_cold / args.budget:.2f} |",
        f"| CPU in the warm call: user / sys | {med['warm_user_s']:.2f} s / "
        f"{med['warm_sys_s']:.2f} s | | |",
        f"| minor page faults in the cold call | {med['minor_faults'] / 1e3:,.0f} k | | |",
        f"| input frame in memory | {med['input_gib']:.2f} GiB | | |",
        f"| output table ({runs[0]['rows']:,} rows, {runs[0]['columns']} columns) | "
        f"{med['output_gib']:.2f} GiB | | |",
        f"| process peak RSS during the cold call | {med['peak_gib']:.2f} GiB "
        f"(+{med['peak_extra_gib']:.2f} over the loaded input) | {mem_total:g} GiB box "
        f"| {med['peak_gib'] / mem_total:.2f} of RAM |",
        "",
        "Baseline: the seed runs this step on 64 cores and gives no time, so there is no "
        f"number to compare with; the ratio is to the {args.budget:g} s budget on "
        f"{m['cpus']} cores. The builder is single-threaded pandas/numpy, so more cores would "
        f"not make it faster. Of the cold call's CPU time, {med['sys_s']:.1f} s is kernel time "
        f"(against {med['user_s']:.1f} s user): the kernel mapping and zeroing fresh memory. "
        "The builder writes every feature into one preallocated float32 matrix that pandas "
        "wraps without a copy (an earlier version, which let pandas consolidate and copy its "
        "columns, took 8.8 s cold here). The warm call needs less kernel time: part of that "
        "memory is already mapped in the process.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=50, help="days the rows are spread over")
    parser.add_argument("--unique-days", type=int, default=10,
                        help="days actually generated; tiled (shifted dates, new keys) to --days")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes; median reported")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True,
                        help="update docs/benchmarks.md (default: yes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0

    with tempfile.TemporaryDirectory(prefix="ml_platform_bench_features_") as tmp:
        path = Path(tmp) / "bookings.parquet"
        print(f"generating {args.rows:,} booking rows over {args.days} days ...", flush=True)
        gen_s, rows = make_input(args.rows, args.days, min(args.unique_days, args.days), path)
        print(f"  {gen_s:.1f}s (not measured), {path.stat().st_size / 2**20:.0f} MiB Parquet")
        runs = []
        for i in range(args.runs):
            r = run_child(path)
            runs.append(r)
            print(f"run {i + 1}/{args.runs}: cold {r['cold_s']:.2f}s  warm {r['warm_s']:.2f}s  "
                  f"user {r['user_s']:.2f}s sys {r['sys_s']:.2f}s  peak RSS "
                  f"{r['peak_gib']:.2f} GiB", flush=True)
    body = render(args, runs, gen_s, rows)
    publish(SECTION, body, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
