"""The code location loads, without touching the environment or disk, and holds the whole chain
of every shipped model with its checks, freshness policies and job. Nothing is faked."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest

from ml_platform.names import STAGES
from ml_platform.pipeline.build import build_definitions, datasets_of
from ml_platform.pipeline.keys import model_key
from ml_platform.specs import load_specs


def test_every_model_has_its_whole_chain_checks_and_job() -> None:
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for spec in load_specs():
        ds = spec.dataset.name
        assert {dg.AssetKey([ds, "raw"]), dg.AssetKey([ds, "validated"])} <= keys
        for stage in STAGES:
            assert model_key(spec.name, stage) in keys
        # lineage: serving reaches back to the raw data
        upstream = dg.AssetSelection.assets(model_key(spec.name, "serving")).upstream()
        assert dg.AssetKey([ds, "raw"]) in upstream.resolve(graph)
        assert defs.resolve_job_def(f"{spec.name}_pipeline") is not None
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert {("bookings/validated", n) for n in
            ("schema", "nulls", "ranges", "duplicates", "completeness")} <= checks
    assert ("listing_price/evaluation", "promotion_gates") in checks
    specs_by_key = {s.key: s for s in defs.resolve_all_asset_specs()}
    assert specs_by_key[dg.AssetKey(["bookings", "raw"])].freshness_policy is not None
    assert specs_by_key[model_key("listing_price", "production")].freshness_policy is not None
    validated = defs.resolve_assets_def(dg.AssetKey(["bookings", "validated"]))
    blocking = {c.name for c in validated.check_specs if c.blocking}
    assert blocking == {"schema", "nulls", "ranges", "duplicates", "completeness"}
    assert {c.name for c in validated.check_specs} - blocking == {"unexpected_columns"}


def test_datasets_shared_by_models_must_agree() -> None:
    spec = next(s for s in load_specs() if s.name == "listing_price")
    other = spec.model_copy(update={
        "name": "other", "dataset": spec.dataset.model_copy(update={"rows_per_day": 5})})
    try:
        datasets_of([spec, other])
    except ValueError as exc:
        assert "declare dataset 'bookings' differently" in str(exc)
    else:
        raise AssertionError("differing dataset blocks were accepted")


@pytest.mark.integration  # real processes
def test_loading_the_code_location_writes_nothing(tmp_path) -> None:
    home = tmp_path / "home"
    code = "import ml_platform.definitions as d; d.defs()"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                   env={"ML_PLATFORM_HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert not home.exists()
    assert list(tmp_path.iterdir()) == []

