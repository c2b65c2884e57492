"""The parent of a home's MLflow server: stops it when no command uses it any more.

Run by `tracking.home_server` as `python -m ml_platform.tracking.server_watchdog --dir
<home>/mlflow --port N`, in its own session. Twice a second, under the home's lock, it looks
at the leases; when none belongs to a living process (the last command returned its lease,
or was killed, SIGKILL included) it removes the record and kills its process group: the
`mlflow server` process, its uvicorn child and itself. When the server exits on its own (a
crash, a port taken in a race), it removes the record and exits with the server's status.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ml_platform.tracking.home_server import HomeFiles
from ml_platform.tracking.server import start_mlflow_server

POLL_S = 0.5


def _forget(files: HomeFiles) -> None:
    """Remove the record if it is this watchdog's (a newer server may have replaced it)."""
    record = files.read_record()
    if record is not None and record.watchdog_pid == os.getpid():
        files.record.unlink(missing_ok=True)


def _stop_group(signum: int = 0, frame: FrameType | None = None) -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)  # the server, uvicorn and this process


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    files = HomeFiles(args.dir)
    server = start_mlflow_server(store=files.root, port=args.port, own_session=False)
    assert server.process is not None
    signal.signal(signal.SIGTERM, _stop_group)
    while True:
        code = server.process.poll()
        if code is not None:
            with files.locked():
                _forget(files)
            print(f"mlflow server on port {args.port} exited with {code}", flush=True)
            return code or 1
        with files.locked():
            if not files.live_leases():
                _forget(files)
                _stop_group()
        time.sleep(POLL_S)


if __name__ == "__main__":
    raise SystemExit(main())
