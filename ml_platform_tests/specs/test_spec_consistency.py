"""Specs are checked at load against what their task produces (`ModelSpec._consistent`,
`DatasetSpec._columns_declared`): gate metrics and `primary_metric` must be metrics of the
task, the columns a spec names (key, date column, target, group column) must be declared
dataset columns, and the error is one line naming the file and the field. Also: the table of
task metrics equals what `ml.metrics` and scoring compute, and the validation settings
(`max_rows_factor`, `date_timezone`) are checked. Spec files are written to a temporary
directory; nothing is faked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ml_platform.ml.metrics import metrics_for
from ml_platform.specs import load_spec
from ml_platform.specs.model_spec import MODEL_METRICS, SPEC_DIR, TASK_METRICS, metrics_of

Edit = Callable[[dict[str, Any]], None]


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((SPEC_DIR / f"{name}.yaml").read_text())


def _set(path: str, value: Any) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = raw
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[leaf] = value
    return edit


CASES: list[tuple[str, str, Edit, str]] = [
    ("gate_metric_of_other_task", "listing_price", _set("promotion.gates.0.metric", "ndcg_at_10"),
     "promotion.gates.0.metric: 'ndcg_at_10' is not a metric of task 'regression'; "
     "choose one of ['mae', 'rmse', 'r2', 'size_mb']"),
    ("gate_metric_typo", "feed_ranking", _set("promotion.gates.1.metric", "size"),
     "promotion.gates.1.metric: 'size' is not a metric of task 'ranking'; "
     "choose one of ['ndcg_at_10', 'precision_at_10', 'auc', 'size_mb']"),
    ("primary_metric", "feed_ranking", _set("promotion.primary_metric", "mae"),
     "promotion.primary_metric: 'mae' is not a metric of task 'ranking'"),
    ("target", "listing_price", _set("training.target", "price"),
     "training.target: column 'price' is not a declared dataset column"),
    ("group_column", "feed_ranking", _set("training.group_column", "user"),
     "training.group_column: column 'user' is not a declared dataset column"),
    ("key", "listing_price", _set("dataset.key", "id"),
     "dataset.key: column 'id' is not a declared column"),
    ("date_column", "listing_price", _set("dataset.date_column", "day"),
     "dataset.date_column: column 'day' is not a declared column"),
    ("date_column_dtype", "listing_price", _set("dataset.date_column", "booking_id"),
     "dataset.date_column: column 'booking_id' is declared 'string', not 'date'"),
    ("max_rows_factor", "listing_price", _set("dataset.max_rows_factor", 1),
     "dataset.max_rows_factor: Input should be greater than 1"),
    ("date_timezone", "listing_price", _set("dataset.date_timezone", "Mars/Olympus"),
     "dataset.date_timezone: unknown timezone 'Mars/Olympus'"),
]


@pytest.mark.parametrize(("model", "edit", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_inconsistent_spec_fails_at_load_in_one_line(tmp_path: Path, model: str, edit: Edit,
                                                     expected: str) -> None:
    raw = _raw(model)
    edit(raw)
    path = tmp_path / f"{model}.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as err:
        load_spec(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"invalid model spec {path}: ")
    assert expected in message


def test_invalid_yaml_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "garbled.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="is not valid YAML") as err:
        load_spec(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_validation_settings_load(tmp_path: Path) -> None:
    raw = _raw("listing_price")
    raw["dataset"].update(max_rows_factor=3, date_timezone="Europe/Paris")
    path = tmp_path / "listing_price.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    assert (spec.dataset.max_rows_factor, spec.dataset.date_timezone) == (3, "Europe/Paris")
    shipped = load_spec(SPEC_DIR / "listing_price.yaml").dataset
    assert (shipped.max_rows_factor, shipped.date_timezone) == (5.0, None)


def test_task_metrics_are_what_the_code_computes() -> None:
    """The table the specs are checked against equals what evaluation produces: every
    metric of `metrics_for` (both classes present, so `auc` is there) plus `size_mb`."""
    rng = np.random.default_rng(0)
    y, score = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0]), rng.normal(size=6)
    assert tuple(metrics_for("regression", y, score)) == TASK_METRICS["regression"]
    assert tuple(metrics_for("ranking", y, score, groups=np.array([1, 1, 1, 2, 2, 2]))) == \
        TASK_METRICS["ranking"]
    assert MODEL_METRICS == ("size_mb",)
    assert metrics_of("ranking") == ("ndcg_at_10", "precision_at_10", "auc", "size_mb")
