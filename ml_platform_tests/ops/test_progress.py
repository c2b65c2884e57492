"""`ops.progress.StepProgress`: while a run executes in process, one line per step as it ends
(its assets, status, seconds), warnings a step logs under it, Dagster's own log only when
verbose; the same lines above a live bar on a terminal. A small real job runs in process on an
ephemeral instance (its assets stand in for the platform's: the lines come from Dagster's
events, whatever the assets do)."""

import io
import re
from collections.abc import Iterator

import dagster as dg
import pytest

from ml_platform.ops.progress import StepProgress


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["2026-01-01", "2026-01-02"]),
          check_specs=[dg.AssetCheckSpec("schema", asset="raw")])
def raw(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])


@dg.asset(deps=[raw])
def features(context: dg.AssetExecutionContext) -> None:
    context.log.warning("one day was left out\nsecond line")


@dg.asset(deps=[features])
def trained() -> None:
    raise dg.Failure("no MLflow tracking server: set MLFLOW_TRACKING_URI")


@dg.asset(deps=[trained])
def serving() -> None:
    return None


@dg.asset(deps=[features], output_required=False)
def production() -> Iterator[dg.MaterializeResult]:
    yield from ()  # production stays where it was: no materialization


JOB = dg.Definitions(assets=[raw, features, trained, serving, production],
                     jobs=[dg.define_asset_job("pipeline")]).resolve_job_def("pipeline")
CONSOLE = {"console": {"config": {"log_level": "INFO"}}}
LINE = re.compile(r"^  (\S.*?) +(ok|passed|no change|skipped|not run|FAILED|\d+ FAILED) +"
                  r"(\d+\.\ds|-)(  .*)?$")


def _run(progress: StepProgress) -> None:
    with progress.running("pipeline"):
        job, loggers = progress.attach(JOB, CONSOLE)
        job.execute_in_process(run_config={"loggers": loggers}, raise_on_error=False,
                               tags={"dagster/asset_partition_range_start": "2026-01-01",
                                     "dagster/asset_partition_range_end": "2026-01-02"})


def test_one_line_per_step_with_status_and_seconds(capfd: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    _run(StepProgress(out, live=False))
    lines = out.getvalue().splitlines()
    assert lines[0] == "pipeline:"
    steps = {m.group(1): (m.group(2), m.group(4)) for m in map(LINE.match, lines) if m}
    assert steps["raw (2 days)"] == ("passed", None)  # its check passed on the run's days
    assert steps["features"] == ("ok", None)
    assert steps["production"] == ("no change", None)
    assert steps["trained"] == ("FAILED", "  no MLflow tracking server: set MLFLOW_TRACKING_URI")
    assert "    warning: one day was left out" in lines
    # every other line is a step line or a warning: no Dagster log, no traceback
    assert all(LINE.match(line) or line.startswith("    warning: ") for line in lines[1:]), lines
    assert steps["serving"] == ("not run", "  a step before it failed")
    assert "dagster - " not in capfd.readouterr().err


def test_verbose_adds_dagsters_log_and_a_terminal_gets_the_same_lines(
        capfd: pytest.CaptureFixture[str]) -> None:
    _run(StepProgress(io.StringIO(), live=False, verbose=True))
    assert "STEP_FAILURE" in capfd.readouterr().err  # Dagster's console log, on stderr

    out = io.StringIO()
    _run(StepProgress(out, live=True))
    assert any(LINE.match(line) for line in out.getvalue().splitlines())
    assert "Traceback" not in out.getvalue()
