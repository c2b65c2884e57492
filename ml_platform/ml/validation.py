"""Data-quality checks of one landed day against its dataset's declared columns.

Pure functions over a DataFrame: the pipeline turns each outcome into an asset check, blocking
for `error` severity; `warn` outcomes are shown but let the data through.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from ml_platform.specs import ColumnSpec, DatasetSpec

CHECK_NAMES = ("schema", "nulls", "ranges", "duplicates", "completeness", "unexpected_columns")
WARN_CHECKS = frozenset({"unexpected_columns"})


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one named check: pass/fail, a sentence for people, numbers for the UI."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        """Whether this outcome keeps the day out of the lake."""
        return not self.passed and self.name not in WARN_CHECKS


def _dtype_ok(series: pd.Series, spec: ColumnSpec) -> bool:
    if spec.dtype == "string":
        return ptypes.is_string_dtype(series) and not ptypes.is_numeric_dtype(series)
    if spec.dtype == "int64":
        return ptypes.is_integer_dtype(series)
    if spec.dtype == "float64":
        return ptypes.is_float_dtype(series) or ptypes.is_integer_dtype(series)
    if spec.dtype == "bool":
        return ptypes.is_bool_dtype(series)
    # date: datetime64 or Python dates (pyarrow's date32 reads back as objects).
    if ptypes.is_datetime64_any_dtype(series):
        return True
    sample = series.dropna().head(100)
    return ptypes.is_object_dtype(series) and all(isinstance(v, dt.date) for v in sample)


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{col}: {n}" for col, n in counts.items())


def check_schema(frame: pd.DataFrame, spec: DatasetSpec) -> CheckOutcome:
    missing = [c for c in spec.columns if c not in frame.columns]
    wrong = {
        c: str(frame[c].dtype)
        for c, col in spec.columns.items()
        if c in frame.columns and not _dtype_ok(frame[c], col)
    }
    extra = [c for c in frame.columns if c not in spec.columns]
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if wrong:
        expected = {c: spec.columns[c].dtype for c in wrong}
        problems.append(f"wrong dtype(s) {wrong} (expected {expected})")
    meta = {"missing_columns": missing, "wrong_dtypes": wrong, "extra_columns": extra}
    if problems:
        return CheckOutcome("schema", False, "; ".join(problems), meta)
    note = f" (ignored extra column(s) {extra})" if extra else ""
    return CheckOutcome("schema", True, f"all {len(spec.columns)} columns present{note}", meta)


def check_nulls(frame: pd.DataFrame, spec: DatasetSpec) -> CheckOutcome:
    counts = {
        c: int(frame[c].isna().sum())
        for c, col in spec.columns.items()
        if c in frame.columns and not col.nullable
    }
    bad = {c: n for c, n in counts.items() if n}
    if bad:
        return CheckOutcome(
            "nulls", False, f"nulls in non-nullable column(s) {_fmt(bad)} of {len(frame)} rows", bad
        )
    return CheckOutcome("nulls", True, "no nulls in non-nullable columns", {})


def check_ranges(frame: pd.DataFrame, spec: DatasetSpec, day: dt.date | None) -> CheckOutcome:
    out_of_range: dict[str, int] = {}
    for c, col in spec.columns.items():
        if c not in frame.columns or (col.min is None and col.max is None):
            continue
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = pd.Series(False, index=frame.index)
        if col.min is not None:
            bad |= values < col.min
        if col.max is not None:
            bad |= values > col.max
        if n := int(bad.sum()):
            out_of_range[c] = n
    if day is not None and spec.date_column in frame.columns:
        dates = pd.to_datetime(frame[spec.date_column], errors="coerce").dt.date
        if n := int((dates != day).sum()):
            out_of_range[spec.date_column] = n
    if out_of_range:
        return CheckOutcome(
            "ranges", False, f"values out of range in column(s) {_fmt(out_of_range)}", out_of_range
        )
    return CheckOutcome("ranges", True, "all values within declared ranges", {})


def check_duplicates(frame: pd.DataFrame, spec: DatasetSpec) -> CheckOutcome:
    if spec.key not in frame.columns:
        return CheckOutcome("duplicates", False, f"key column {spec.key!r} is missing", {})
    n = int(frame[spec.key].duplicated().sum())
    if n:
        return CheckOutcome(
            "duplicates", False, f"{n} duplicate value(s) in key column {spec.key!r}", {spec.key: n}
        )
    return CheckOutcome("duplicates", True, f"key column {spec.key!r} is unique", {})


def check_completeness(frame: pd.DataFrame, spec: DatasetSpec, expected: int) -> CheckOutcome:
    ratio = len(frame) / expected if expected else 0.0
    meta = {"rows": len(frame), "expected_rows": expected, "ratio": round(ratio, 4)}
    if ratio < spec.min_completeness:
        return CheckOutcome(
            "completeness",
            False,
            f"{len(frame)} of {expected} expected rows ({ratio:.0%}, below "
            f"{spec.min_completeness:.0%}): short by {expected - len(frame)}",
            meta,
        )
    return CheckOutcome("completeness", True, f"{len(frame)} of {expected} expected rows", meta)


def check_unexpected_columns(frame: pd.DataFrame, spec: DatasetSpec) -> CheckOutcome:
    extra = [c for c in frame.columns if c not in spec.columns]
    if extra:
        return CheckOutcome("unexpected_columns", False,
                            f"unexpected column(s) {extra}: ignored downstream", {"extra": extra})
    return CheckOutcome("unexpected_columns", True, "no unexpected columns", {})


def validate(
    frame: pd.DataFrame, spec: DatasetSpec, *, day: dt.date | None, expected_rows: int
) -> list[CheckOutcome]:
    """Every check of CHECK_NAMES, in order, for one day's rows."""
    return [
        check_schema(frame, spec),
        check_nulls(frame, spec),
        check_ranges(frame, spec, day),
        check_duplicates(frame, spec),
        check_completeness(frame, spec, expected_rows),
        check_unexpected_columns(frame, spec),
    ]
