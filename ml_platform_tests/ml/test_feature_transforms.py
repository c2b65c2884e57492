"""Unit tests of `ml_platform.ml.feature_transforms` (the feature code a served model carries)
and `ml.importance`: the module imports nothing of ml_platform; the feature table's features
are the transform of its raw columns; a date column gives the same features as Python dates,
ISO strings or datetime64 (what training, JSON clients and MLflow's schema enforcement hand
over); a missing, mistyped or null input column is named; permutation importance ranks the
columns a toy predictor reads above one it ignores. Real generated rows; nothing is faked."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.ml import feature_transforms
from ml_platform.ml.features import build_features, feature_columns, transform_config
from ml_platform.ml.importance import permutation_importance
from ml_platform.simulation.bookings import generate_bookings
from ml_platform.simulation.engagement import generate_engagement


def test_the_module_is_self_contained() -> None:
    tree = ast.parse(Path(feature_transforms.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "typing", "numpy", "pandas"}, imported


@pytest.mark.parametrize(("builder", "raw", "key", "date", "target"), [
    ("bookings", generate_bookings(dt.date(2024, 3, 8), 300), "booking_id", "booking_date",
     "nightly_price"),
    ("engagement", generate_engagement(dt.date(2024, 3, 8), 300), "impression_id", "event_date",
     "clicked"),
])
def test_table_features_are_the_transform_of_the_raw_columns(
        builder: str, raw: pd.DataFrame, key: str, date: str, target: str) -> None:
    table = build_features(builder, raw, key=key, date_column=date, target=target)
    config = transform_config(builder, date)
    served = feature_transforms.transform(raw.drop(columns=[target]), config)
    np.testing.assert_array_equal(served, table[list(feature_columns(builder))].to_numpy())


def test_dates_in_any_form_give_the_same_features() -> None:
    raw = pd.concat([generate_bookings(dt.date(2024, 3, 8), 50),
                     generate_bookings(dt.date(2024, 3, 9), 50)], ignore_index=True)
    config = transform_config("bookings", "booking_date")
    as_dates = feature_transforms.transform(raw, config)
    for form in (raw["booking_date"].astype(str), pd.to_datetime(raw["booking_date"])):
        np.testing.assert_array_equal(
            feature_transforms.transform(raw.assign(booking_date=form), config), as_dates)


def test_bad_input_columns_are_named() -> None:
    raw = generate_bookings(dt.date(2024, 3, 8), 20)
    config = transform_config("bookings", "booking_date")
    with pytest.raises(ValueError, match=r"missing input column\(s\) \['bedrooms'\]"):
        feature_transforms.transform(raw.drop(columns=["bedrooms"]), config)
    with pytest.raises(ValueError, match="column 'bedrooms' must hold int values"):
        feature_transforms.transform(raw.assign(bedrooms="three"), config)
    with pytest.raises(ValueError, match="column 'has_pool' must hold bool values"):
        feature_transforms.transform(raw.assign(has_pool="yes"), config)
    with pytest.raises(ValueError, match="column 'booking_date' must hold date values"):
        feature_transforms.transform(raw.assign(booking_date="someday"), config)
    with pytest.raises(ValueError, match="column 'review_score' has null values"):
        feature_transforms.transform(raw.assign(review_score=np.nan), config)
    # Columns the transform does not read may be absent: the key, the price.
    assert feature_transforms.transform(raw.drop(columns=["booking_id", "nightly_price"]),
                                        config).shape == (20, len(feature_columns("bookings")))


def test_unknown_category_encodes_as_zeros() -> None:
    raw = generate_bookings(dt.date(2024, 3, 8), 5).assign(neighbourhood="moon")
    config = transform_config("bookings", "booking_date")
    names = feature_transforms.feature_names(config)
    x = feature_transforms.transform(raw, config)
    assert (x[:, [i for i, n in enumerate(names) if n.startswith("neighbourhood_")]] == 0).all()


def test_permutation_importance_ranks_what_the_predictor_reads() -> None:
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500),
                         "ignored": rng.normal(size=500)})
    y = 3 * rows["a"].to_numpy() + rows["b"].to_numpy()

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return 3 * frame["a"].to_numpy() + frame["b"].to_numpy()

    table = permutation_importance(predict, rows, ["ignored", "b", "a"],
                                   lambda p: float(np.abs(p - y).mean()), metric="mae",
                                   higher_is_better=False, seed=1)
    assert list(table["column"]) == ["a", "b", "ignored"]
    assert table["importance"].iloc[0] > table["importance"].iloc[1] > 0
    assert table["importance"].iloc[2] == 0.0 and (table["baseline"] == 0.0).all()
    with pytest.raises(ValueError, match="at least one row"):
        permutation_importance(predict, rows.head(0), ["a"], lambda p: 0.0, metric="mae",
                               higher_is_better=False)
