"""Runs a command for an owner process and stops it when the owner dies, SIGKILL included.

`ml-platform dev` starts `dagster dev` (webserver, daemon, code server) through this guard:
`python -m ml_platform.ops.process_guard --owner PID --owner-start T -- CMD...`, in a session
of its own, so the guard, the command and every child share one process group. The guard
polls the owner twice a second; when it is gone it interrupts the group as Ctrl-C would, then
kills what is left after a grace period. Why not `prctl(PR_SET_PDEATHSIG)`: it reaches only
the direct child, not the webserver and daemon that `dagster dev` starts in turn. Interrupted
itself (Ctrl-C, or the owner's clean shutdown signalling the group), the guard waits for the
command to exit and returns its status.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from ml_platform.tracking.home_server import alive, process_start

POLL_S = 0.5
GRACE_S = 30.0


def guarded_command(command: Sequence[str], owner: int | None = None) -> list[str]:
    """The argv that runs `command` under a guard of `owner` (default: this process)."""
    pid = owner or os.getpid()
    return [sys.executable, "-m", "ml_platform.ops.process_guard", "--owner", str(pid),
            "--owner-start", process_start(pid) or "", "--", *command]


def _stop_group(child: subprocess.Popen[bytes]) -> int:
    os.killpg(os.getpgrp(), signal.SIGINT)  # the group, this guard included (ignored here)
    try:
        return child.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(os.getpgrp(), signal.SIGKILL)
        return -signal.SIGKILL


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--owner", required=True, type=int)
    parser.add_argument("--owner-start", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the group's Ctrl-C is for the command
    child = subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while True:
        code = child.poll()
        if code is not None:
            return code
        if not alive(args.owner, args.owner_start):
            return _stop_group(child)
        time.sleep(POLL_S)


if __name__ == "__main__":
    raise SystemExit(main())
