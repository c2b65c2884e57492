"""What every benchmark script shares: the machine description and docs/benchmarks.md sections.

The scripts run as `python benchmarks/<name>.py`, so this module is imported as `common`.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shlex
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOAD_AT_START = os.getloadavg()[0]  # this module is imported when a benchmark script starts
DOC = ROOT / "docs" / "benchmarks.md"
DOC_HEADER = """# Benchmarks

Measured by the scripts in [`benchmarks/`](../benchmarks/); `make bench` runs them all and
rewrites the sections below (each script only its own, between its `<!-- name:start/end -->`
markers; `--no-write` prints without touching this file). Timings are medians of a few runs on
whatever machine ran them, listed with each section; they are never asserted by the tests.
"""


def machine() -> dict[str, str]:
    """CPU count and model, memory, Python and torch versions of this machine."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal"))
    return {
        "cpus": str(len(os.sched_getaffinity(0))), "memory": f"{kib / 2**20:.1f} GiB",
        "cpu": cpu, "python": platform.python_version(), "torch": version("torch"),
    }


def run_context(script: str, versions: str = "") -> list[str]:
    """The lines every section opens with: command, date, load, machine (plus `versions`)."""
    m = machine()
    return [
        f"- command: `{command_line(script)}`",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- load average (1 min) at start / end: {LOAD_AT_START:.1f} / {os.getloadavg()[0]:.1f}"
        " (other work on the box competes for the same cores)",
        f"- machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']} RAM; Python {m['python']}, "
        f"torch {m['torch']}" + (f", {versions}" if versions else ""),
    ]


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace the `name` section of docs/benchmarks.md (creating the file if needed)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else DOC_HEADER
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def command_line(script: str) -> str:
    """The command that ran `script` (a path), as a user would type it."""
    return shlex.join([".venv/bin/python", "benchmarks/" + Path(script).name, *sys.argv[1:]])


def publish(name: str, body: str, *, write: bool) -> None:
    """Print a section's results and, with `write`, put them into docs/benchmarks.md."""
    print()
    print(body)
    if write:
        write_section(name, body)
        print(f"updated {DOC.relative_to(ROOT)} (section `{name}`)")
