"""Knowing when a run's worker process died, in the `local` profile.

Dagster's `DefaultRunLauncher` starts run workers as children of the code server and cannot
say whether one is alive, so a worker killed mid-run (out of memory, `kill -9`) would leave
its run STARTED for ever, and its days in flight. Here the run worker names itself: its first
step tags the run with the worker's host and pid (`record_run_worker`), and `LocalRunLauncher`
(the local instance's launcher) answers Dagster's run monitoring from those tags: a worker that
is gone fails its run, which the daemon's run retries and the landing sensor then take up
again. Runs executed in a command's own process (`ml-platform demo`, `ingest`) carry the same
tags from the start (`ops.execute`).
"""

from __future__ import annotations

import os
import socket

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

from ml_platform.names import RunTag
from ml_platform.tracking.home_server import process_start


def record_run_worker(context: dg.AssetExecutionContext) -> None:
    """Tag the run with its worker process once. Every job of the platform runs its steps in
    the run worker's own process (`in_process_executor`, `pipeline.build`)."""
    if RunTag.PID not in context.run.tags:
        context.instance.add_run_tags(context.run_id, {RunTag.HOST: socket.gethostname(),
                                                       RunTag.PID: str(os.getpid())})


class LocalRunLauncher(dg.DefaultRunLauncher):
    """`DefaultRunLauncher` with run-worker health checks from the run's own tags."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        pid, host = run.tags.get(RunTag.PID, ""), run.tags.get(RunTag.HOST, "")
        if not pid.isdigit() or host != socket.gethostname():
            # not known yet (no step has started), or on another machine: nothing to say
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        if process_start(int(pid)) is not None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED,
                                    f"the run worker {host}:{pid} is gone (killed or out of memory)")
