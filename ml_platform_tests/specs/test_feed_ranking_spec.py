"""Unit tests of the shipped `feed_ranking` spec and the ModelSpec fields ranking added: it loads
with the stated gates (NDCG@10 > 0.78, size < 200 MB, higher is better, not worse than the
champion), the previous-day requirement, a 14-day window and a group column its feature builder
keeps; `listing_price` keeps the defaults; bad combinations (ranking without a group column, a
group column on regression, a zero window, an unknown task) fail naming the field. Spec variants
are edited in memory or written to a temporary directory; nothing is faked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_platform.ml.features import group_columns
from ml_platform.specs import ModelSpec, load_spec
from ml_platform.specs.model_spec import SPEC_DIR

SHIPPED = SPEC_DIR / "feed_ranking.yaml"


def _raw() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text())


def test_feed_ranking_loads_with_the_stated_gates() -> None:
    spec = load_spec(SHIPPED)
    assert spec.name == "feed_ranking"
    promo = spec.promotion
    assert [str(g) for g in promo.gates] == ["ndcg_at_10 > 0.78", "size_mb < 200"]
    assert promo.primary_metric == "ndcg_at_10"
    assert promo.higher_is_better is True
    assert promo.not_worse_than_champion is True
    ndcg = promo.gates[0]
    assert ndcg.passes(0.79) and not ndcg.passes(0.78) and not ndcg.passes(0.6)


def test_feed_ranking_data_and_training_fields() -> None:
    spec = load_spec(SHIPPED)
    ds, tr = spec.dataset, spec.training
    assert (ds.name, ds.generator, ds.key, ds.date_column) == (
        "engagement", "engagement", "impression_id", "event_date")
    assert ds.require_previous_day_complete is True
    assert ds.rows_per_day == 2400
    assert all(c.min is not None or c.dtype in ("string", "bool", "date")
               for c in ds.columns.values())
    assert (tr.task, tr.feature_builder, tr.target) == ("ranking", "engagement", "clicked")
    assert tr.window_days == 14
    assert tr.group_column == "user_id"
    assert (tr.group_column,) == group_columns(tr.feature_builder)
    assert tr.group_column in ds.columns
    assert spec.compute.gpu == 1 and spec.compute.tolerations


def test_listing_price_is_pointwise_on_a_window() -> None:
    spec = load_spec(SPEC_DIR / "listing_price.yaml")
    assert spec.training.task == "regression"
    assert spec.training.window_days == 14  # keeps a daily retrain's cost flat
    assert spec.training.group_column is None
    assert spec.dataset.require_previous_day_complete is False
    assert group_columns(spec.training.feature_builder) == ()


def _listing_price_raw() -> dict[str, Any]:
    return yaml.safe_load((SPEC_DIR / "listing_price.yaml").read_text())


@pytest.mark.parametrize(("make", "field"), [
    (lambda: {**_raw(), "training": {**_raw()["training"], "group_column": None}}, "group_column"),
    (lambda: {**_listing_price_raw(),
              "training": {**_listing_price_raw()["training"], "group_column": "listing_id"}},
     "group_column"),
    (lambda: {**_raw(), "training": {**_raw()["training"], "window_days": 0}},
     "training.window_days"),
    (lambda: {**_raw(), "training": {**_raw()["training"], "task": "classification"}},
     "training.task"),
], ids=["ranking_without_group", "regression_with_group", "zero_window", "unknown_task"])
def test_bad_ranking_fields_fail_naming_the_field(tmp_path: Path, make: Any, field: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(make()))
    with pytest.raises(ValueError, match="invalid model spec") as err:
        load_spec(path)
    assert field in str(err.value)


def test_fingerprint_tracks_the_new_fields() -> None:
    spec = load_spec(SHIPPED)
    raw = _raw()
    raw["training"]["window_days"] = 7
    assert ModelSpec.model_validate(raw).fingerprint != spec.fingerprint
    raw = _raw()
    raw["dataset"]["require_previous_day_complete"] = False
    assert ModelSpec.model_validate(raw).fingerprint != spec.fingerprint
