"""The CLI error convention (`ml_platform.ops.errors`), command by command: each error a user
can cause without a running platform — an unknown model or dataset, an impossible date, a bad
profile or trainer, a broken spec, a tracking server that is down, a command for another
profile, an unexpected failure — is one line on stderr naming the thing and the choices, exit
status 2 for usage errors and 1 for failures, and a traceback only with `--debug`. `main` runs
in process (the demo in a subprocess: it ends its process); nothing is faked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ml_platform.cli import main
from ml_platform.tracking.server import free_port


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ml-platform: error: "), err
    return code, lines[0]


@pytest.mark.parametrize(("argv", "expected"), [
    (["k8s", "render", "nope"], "unknown model 'nope'; known: feed_ranking, listing_price"),
    (["history", "nope"], "unknown model 'nope'; known: feed_ranking, listing_price"),
    (["promote", "nope", "--version", "1", "--reason", "x"], "unknown model 'nope'"),
    (["rollback", "nope"], "unknown model 'nope'"),
    (["lineage", "nope"], "unknown model 'nope'"),
    (["simulate", "--dataset", "nope"], "unknown dataset 'nope'; known: bookings, engagement"),
    (["ingest", "--dataset", "nope"], "unknown dataset 'nope'; known: bookings, engagement"),
    (["simulate", "--dataset", "bookings", "--start", "2026-02-30"],
     "--start '2026-02-30' is not a calendar date (YYYY-MM-DD)"),
    (["lineage", "--partition", "bookings/2026-02-30"], "'2026-02-30' is not a calendar date"),
    (["lineage", "--partition", "bookings"], "is not DATASET/YYYY-MM-DD"),
    (["lineage", "--partition", "nope/2026-01-01"], "unknown dataset 'nope'"),
    (["lineage"], "lineage needs MODEL or --partition"),
    (["lineage", "listing_price", "--predictions", "2026-13-01"],
     "--predictions day '2026-13-01' is not a calendar date"),
    (["predictions", "nope"], "unknown model 'nope'"),
    (["predictions", "feed_ranking"], "feed_ranking has no predictions: its spec does not "
                                      "enable batch_inference"),
])
def test_usage_errors_are_one_line_with_status_2(capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], expected: str) -> None:
    code, line = _error(capsys, *argv)
    assert code == 2 and expected in line


def test_bad_profile_and_trainer_name_the_variable_and_choices(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_PLATFORM_PROFILE", "cloud")
    code, line = _error(capsys, "history", "listing_price")
    assert code == 2 and "ML_PLATFORM_PROFILE='cloud' is not a profile; choose one of local, k8s" in line
    monkeypatch.setenv("ML_PLATFORM_PROFILE", "local")
    monkeypatch.setenv("ML_PLATFORM_TRAINER", "gpu")
    code, line = _error(capsys, "simulate", "--dataset", "bookings", "--days", "1")
    assert code == 2 and "ML_PLATFORM_TRAINER='gpu' is not a trainer; choose one of process, pod" in line


def test_a_broken_spec_names_its_file_and_field(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from ml_platform.specs.model_spec import SPEC_DIR

    text = (SPEC_DIR / "listing_price.yaml").read_text().replace("epochs: 15", "epochs: -3")
    (tmp_path / "listing_price.yaml").write_text(text)
    monkeypatch.setenv("ML_PLATFORM_SPEC_DIR", str(tmp_path))
    code, line = _error(capsys, "k8s", "render", "listing_price")
    assert code == 2 and f"{tmp_path / 'listing_price.yaml'}: training.epochs:" in line


@pytest.mark.integration  # real processes
def test_a_tracking_server_that_is_down_fails_in_one_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("ML_PLATFORM_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    code, line = _error(capsys, "history", "listing_price")
    assert code == 1 and f"the MLflow server at {url} (MLFLOW_TRACKING_URI) is not answering" in line


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the state home should be")
    monkeypatch.setenv("ML_PLATFORM_HOME", str(blocker))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code, line = _error(capsys, "simulate", "--dataset", "bookings", "--days", "1")
    assert code == 1 and "(run with --debug for the traceback)" in line
    assert main(["--debug", "simulate", "--dataset", "bookings", "--days", "1"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.integration  # real processes
def test_local_only_commands_refuse_the_k8s_profile() -> None:
    proc = subprocess.run([sys.executable, "-m", "ml_platform.cli", "demo"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "ML_PLATFORM_PROFILE": "k8s"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "`ml-platform demo` runs the embedded local profile" in proc.stderr
