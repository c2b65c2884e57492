"""CLI errors that need a registry to exist: a version, alias or rollback target the model does
not have is one line naming it and the versions there are (exit status 2), not MLflow's
RESOURCE_DOES_NOT_EXIST traceback. A real MLflow server and Dagster instance; nothing is faked."""

from __future__ import annotations

import pytest
import yaml

from ml_platform.cli import main
from ml_platform_tests.pipeline.conftest import Platform


@pytest.fixture(scope="module")
def promoted(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    assert platform.run().success and platform.production() == "1"
    specs = tmp_path_factory.mktemp("specs")
    (specs / "spec.yaml").write_text(yaml.safe_dump(platform.spec.model_dump(mode="json")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_PLATFORM_SPEC_DIR", str(specs))
        yield platform


@pytest.mark.parametrize(("argv", "expected"), [
    (["lineage", "{m}", "--version", "99"], "{m} has no version '99'; versions: 1"),
    (["lineage", "{m}", "--alias", "staging"], "{m} has no version aliased 'staging'; aliases: "),
    (["promote", "{m}", "--version", "99", "--reason", "x"], "{m} has no version '99'; versions: 1"),
    (["rollback", "{m}", "--to", "7"], "{m} has no version '7'; versions: 1"),
])
def test_unknown_versions_and_aliases(promoted: Platform, capsys: pytest.CaptureFixture[str],
                                      argv: list[str], expected: str) -> None:
    name = promoted.spec.name
    code = main([a.format(m=name) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert expected.format(m=name) in err


def test_nothing_to_roll_back_to_is_a_failure(promoted: Platform,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rollback", promoted.spec.name])
    err = capsys.readouterr().err
    assert code == 1 and "has no earlier production version to roll back to" in err


def test_history_of_a_promoted_model(promoted: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", promoted.spec.name]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and "promotion" in out and "-> v1" in out
