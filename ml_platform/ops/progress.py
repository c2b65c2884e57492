"""What `demo` and `ingest` print while a run executes in process: one line per step as it ends
(asset, status, seconds), above a live progress bar on an interactive terminal (rich). Dagster's
own log is shown only with `--verbose`.

The lines come from the run's events, through a Dagster logger attached to the job: nothing is
parsed from text.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import dagster as dg

LOGGER = "progress"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


class StepProgress:
    """Prints the steps of the runs executed while it is `running`."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None,
                 verbose: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.verbose = verbose
        self._started: dict[str, float] = {}
        self._assets: dict[str, list[str]] = defaultdict(list)
        self._checks: dict[str, list[tuple[str, bool]]] = defaultdict(list)
        self._title = ""
        self._bar: Any = None  # rich.progress.Progress while a live run is shown
        self._task: Any = None

    # -- wiring into a run ------------------------------------------------------------------

    def attach(self, job: dg.JobDefinition, loggers: dict[str, Any],
               asset_selection: Sequence[dg.AssetKey] | None = None
               ) -> tuple[dg.JobDefinition, dict[str, Any]]:
        """`job` with this progress as a logger, and the run config's `loggers` to use: the
        given ones (Dagster's console log) only when verbose."""
        handler = _EventHandler(self)
        logger = logging.Logger(f"ml_platform.{LOGGER}", logging.DEBUG)
        logger.addHandler(handler)
        job = job.with_logger_defs({**job.loggers, LOGGER: dg.LoggerDefinition(lambda _: logger)})
        steps = job.get_subset(asset_selection=set(asset_selection)) if asset_selection else job
        self._total = len(steps.graph.nodes)
        return job, {**(loggers if self.verbose else {}), LOGGER: {}}

    @contextlib.contextmanager
    def running(self, title: str) -> Iterator[StepProgress]:
        """Show `title` and the run's steps; a live bar on a terminal."""
        self._started.clear()
        self._assets.clear()
        self._checks.clear()
        self._total = 0
        self._title = f"{title}:"  # printed with the first step: nothing when nothing runs
        if not self.live:
            yield self
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(file=self.stream), transient=True) as bar:
            self._bar, self._task = bar, bar.add_task("starting", total=None)
            try:
                yield self
            finally:
                self._bar = self._task = None

    # -- events -----------------------------------------------------------------------------

    def event(self, event: dg.DagsterEvent) -> None:
        step = event.step_key
        kind = event.event_type
        if kind == dg.DagsterEventType.RUN_START and self._bar is not None:
            self._bar.update(self._task, total=self._total or None)
        if step is None:
            return
        if kind == dg.DagsterEventType.STEP_START:
            self._started[step] = time.monotonic()
            if self._bar is not None:
                self._bar.update(self._task, description=_label(step, []))
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key is not None:
            self._assets[step].append(event.asset_key.to_user_string())
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.asset_check_evaluation_data
            self._checks[step].append(
                (f"{data.asset_key.to_user_string()}:{data.check_name}", data.passed))
        elif kind == dg.DagsterEventType.STEP_SUCCESS:
            self._step_done(step, "ok" if self._assets[step] or self._checks[step] else "no change")
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            reason = (data.user_failure_data.description if data.user_failure_data else None) \
                or (data.error.message if data.error else "")
            self._step_done(step, "FAILED", _first_line(reason))
        elif kind == dg.DagsterEventType.STEP_SKIPPED:
            self._step_done(step, "skipped")
        elif kind == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            self._step_done(step, "retrying")

    def abandoned(self, step: str) -> None:
        """A step Dagster did not run because a step before it failed."""
        self._step_done(step, "not run", "a step before it failed")

    def message(self, level: int, text: str) -> None:
        """A warning or error a step logged: shown under the step, first line only."""
        if level >= logging.WARNING and not self.verbose:
            self._print(f"    {logging.getLevelName(level).lower()}: {_first_line(text)}")

    def _step_done(self, step: str, status: str, detail: str = "") -> None:
        started = self._started.pop(step, None)
        seconds = f"{time.monotonic() - started:5.1f}s" if started is not None else "     -"
        checks = self._checks.pop(step, [])
        failed = [name for name, passed in checks if not passed]
        if checks and status == "ok":
            status = f"{len(failed)} FAILED" if failed else "passed"
        label = _label(step, self._assets.pop(step, []))
        line = f"  {label:<40} {status:<10} {seconds}"
        if failed:
            detail = detail or ", ".join(failed)
        self._print(line + (f"  {detail}" if detail else ""))
        if self._bar is not None and status != "retrying":
            self._bar.advance(self._task)

    def _print(self, line: str) -> None:
        if self._title:
            title, self._title = self._title, ""
            self._print(title)
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self.stream, flush=True)


def _label(step: str, assets: list[str]) -> str:
    """What a step is, in the words of the UI: its assets, or its name."""
    if assets:
        # a partitioned asset has one materialization per day of the run
        days = {a: assets.count(a) for a in assets}
        return ", ".join(a + (f" ({n} days)" if n > 1 else "") for a, n in days.items())
    # a step of checks alone is named for them (e.g. `bookings_freshness`)
    return step.replace("__", "/")


class _EventHandler(logging.Handler):
    def __init__(self, progress: StepProgress) -> None:
        super().__init__(logging.DEBUG)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_event", None)
        if isinstance(event, dg.DagsterEvent):
            self.progress.event(event)
        elif record.levelno >= logging.WARNING:
            meta = getattr(record, "dagster_meta", {}) or {}
            text = str(meta.get("orig_message") or record.getMessage())
            # no event says that a step was abandoned, only this line of Dagster's
            if meta.get("step_key") and text.startswith(_ABANDONED):
                self.progress.abandoned(str(meta["step_key"]))
            else:
                self.progress.message(record.levelno, text)


_ABANDONED = "Dependencies for step "
