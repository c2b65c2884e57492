"""Unit tests of `ml_platform.specs.model_spec`: the shipped YAML specs load and agree with the
code they name (generators, feature builders, metrics), `Gate.passes` for every operator, and
bad spec files (invalid fields, unknown keys, invalid YAML, duplicate names) fail with a
ValueError naming the file. Spec files are written to a temporary directory; nothing is faked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from ml_platform.ml.features import FEATURE_BUILDERS
from ml_platform.ml.metrics import metrics_for
from ml_platform.simulation.generators import GENERATORS
from ml_platform.specs import Gate, ModelSpec, load_spec, load_specs
from ml_platform.specs.model_spec import SPEC_DIR

SHIPPED = SPEC_DIR / "listing_price.yaml"


def _raw() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text())


def _write(directory: Path, name: str, raw: dict[str, Any]) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_specs_load() -> None:
    specs = load_specs()
    names = [s.name for s in specs]
    assert "listing_price" in names
    assert names == sorted(names)
    assert len(specs) == len(list(SPEC_DIR.glob("*.yaml")))


@pytest.mark.parametrize("spec", load_specs(), ids=lambda s: s.name)
def test_shipped_spec_is_consistent_with_the_code(spec: ModelSpec) -> None:
    ds, tr, promo = spec.dataset, spec.training, spec.promotion
    assert ds.generator in GENERATORS
    assert tr.feature_builder in FEATURE_BUILDERS
    assert {ds.key, ds.date_column, tr.target} <= set(ds.columns)
    assert ds.columns[ds.date_column].dtype == "date"
    assert ds.freshness.warn_hours < ds.freshness.fail_hours
    assert spec.freshness.warn_hours < spec.freshness.fail_hours
    assert promo.gates
    known_metrics = {*metrics_for(tr.task, [1.0, 2.0], [1.0, 2.0]), "size_mb"}
    assert {g.metric for g in promo.gates} <= known_metrics
    assert promo.primary_metric in known_metrics


def test_shipped_listing_price_values() -> None:
    spec = load_spec(SHIPPED)
    assert spec.name == "listing_price"
    assert spec.dataset.rows_per_day == 1000
    assert spec.training.hidden == (64, 64)
    assert [str(g) for g in spec.promotion.gates] == ["mae < 12", "size_mb < 200"]


def test_fingerprint_is_stable_and_tracks_the_content() -> None:
    spec = load_spec(SHIPPED)
    assert spec.fingerprint == load_spec(SHIPPED).fingerprint
    assert len(spec.fingerprint) == 12
    raw = _raw()
    raw["training"]["epochs"] += 1
    assert ModelSpec.model_validate(raw).fingerprint != spec.fingerprint


def test_specs_are_frozen() -> None:
    spec = load_spec(SHIPPED)
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(("op", "value", "threshold", "expected"), [
    ("<", 11.9, 12, True), ("<", 12, 12, False), ("<", 12.1, 12, False),
    ("<=", 11.9, 12, True), ("<=", 12, 12, True), ("<=", 12.1, 12, False),
    (">", 0.9, 0.8, True), (">", 0.8, 0.8, False), (">", 0.7, 0.8, False),
    (">=", 0.9, 0.8, True), (">=", 0.8, 0.8, True), (">=", 0.7, 0.8, False),
])
def test_gate_passes(op: str, value: float, threshold: float, expected: bool) -> None:
    gate = Gate(metric="m", op=op, threshold=threshold)
    assert gate.passes(value) is expected


def test_gate_str_and_unknown_op() -> None:
    assert str(Gate(metric="mae", op="<", threshold=12.0)) == "mae < 12"
    with pytest.raises(ValidationError):
        Gate(metric="mae", op="==", threshold=12.0)


def _set(path: str, value: Any) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[leaf] = value
    return edit


BAD_FIELDS = [
    ("epochs_zero", _set("training.epochs", 0), "training.epochs"),
    ("unknown_top_level_key", _set("colour", "blue"), "colour"),
    ("unknown_nested_key", _set("training.epoch", 3), "training.epoch"),
    ("bad_name", _set("name", "Listing-Price"), "name"),
    ("bad_dtype", _set("dataset.columns.nights", {"dtype": "int32"}), "dataset.columns.nights"),
    ("no_columns", _set("dataset.columns", {}), "at least one column"),
    ("gate_op", _set("promotion.gates", [{"metric": "mae", "op": "==", "threshold": 1}]),
     "promotion.gates.0.op"),
    ("valid_fraction", _set("training.valid_fraction", 0.6), "training.valid_fraction"),
    ("missing_required", lambda raw: raw.pop("owner"), "owner"),
]


@pytest.mark.parametrize(("edit", "field"), [(e, f) for _, e, f in BAD_FIELDS],
                         ids=[i for i, _, _ in BAD_FIELDS])
def test_bad_field_raises_naming_file_and_field(tmp_path: Path, edit: Any, field: str) -> None:
    raw = _raw()
    edit(raw)
    path = _write(tmp_path, "broken.yaml", raw)
    with pytest.raises(ValueError, match="invalid model spec") as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert field in str(err.value)
    # load_specs surfaces the same error for the directory holding it.
    with pytest.raises(ValueError, match=r"broken\.yaml"):
        load_specs(tmp_path)


@pytest.mark.parametrize("text", ["name: [unclosed\n", "a: b: c\n", "\tname: x\n"])
def test_invalid_yaml_raises_naming_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "garbled.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="is not valid YAML") as err:
        load_spec(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text", ["", "- just\n- a list\n"])
def test_non_mapping_yaml_raises_naming_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="invalid model spec") as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_duplicate_model_names_raise(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", _raw())
    _write(tmp_path, "b.yaml", _raw())
    with pytest.raises(ValueError, match="duplicate model names") as err:
        load_specs(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_load_specs_from_a_directory_sorts_by_name(tmp_path: Path) -> None:
    for file, name in [("1.yaml", "zeta"), ("2.yaml", "alpha"), ("3.yaml", "mid")]:
        _write(tmp_path, file, {**_raw(), "name": name})
    (tmp_path / "notes.txt").write_text("not a spec")
    assert [s.name for s in load_specs(tmp_path)] == ["alpha", "mid", "zeta"]
