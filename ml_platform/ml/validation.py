"""Data-quality checks of one landed day against its dataset's declared columns.

Pure functions over a DataFrame: the pipeline turns each outcome into an asset check, blocking
for `error` severity; `warn` outcomes are shown but let the data through. A failing outcome's
description is one line that starts with the day and names the column(s) and the count.

Dates in the date column must be timezone-naive calendar dates of the file's own day. With
`dataset.date_timezone` set, `normalise_dates` first turns timezone-aware timestamps into the
calendar date in that timezone; the pipeline calls it before `validate` and stores its result.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from ml_platform.specs import ColumnSpec, DatasetSpec

CHECK_NAMES = ("schema", "nulls", "ranges", "duplicates", "completeness", "unexpected_columns")
WARN_CHECKS = frozenset({"unexpected_columns"})
#: What each check verifies, for the asset checks' descriptions in the UI.
CHECK_DESCRIPTIONS = {
    "schema": "Every declared column is present with its declared dtype; dates are "
              "timezone-naive calendar dates.",
    "nulls": "No nulls in non-nullable columns.",
    "ranges": "Values within declared min/max; rows dated inside their partition.",
    "duplicates": "The key column is unique within the day.",
    "completeness": "Landed rows between min_completeness and max_rows_factor times the "
                    "expected rows (from the manifest).",
    "unexpected_columns": "Columns the spec does not declare (a warning: they are ignored).",
}


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


@dataclass(frozen=True)
class DateProblems:
    """Rows of a date column that are not timezone-naive calendar dates."""

    aware: int = 0  # timezone-aware timestamps
    timed: int = 0  # naive timestamps with a time of day

    def describe(self, column: str, rows: int) -> list[str]:
        out = []
        if self.aware:
            out.append(f"timezone-aware dates in column {column}: {self.aware} of {rows} rows "
                       "(land calendar dates, or set dataset.date_timezone)")
        if self.timed:
            out.append(f"times of day in date column {column}: {self.timed} of {rows} rows")
        return out


def date_problems(series: pd.Series) -> DateProblems:
    """Count the values of a date column that are timezone-aware or carry a time of day."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return DateProblems(aware=int(series.notna().sum()))
    if ptypes.is_datetime64_dtype(series):
        return DateProblems(timed=int((series.notna() & (series != series.dt.normalize())).sum()))
    aware = timed = 0
    for value in series.dropna():
        if isinstance(value, dt.datetime):  # pd.Timestamp included
            if value.tzinfo is not None:
                aware += 1
            elif value.time() != dt.time(0):
                timed += 1
    return DateProblems(aware, timed)


def calendar_dates(series: pd.Series) -> pd.Series:
    """Each value's calendar date (its own wall-clock date for a timezone-aware one), None
    where it is not a date. Never raises, mixed timezones and garbage included."""
    if ptypes.is_datetime64_any_dtype(series):
        return series.dt.date.astype(object).where(series.notna(), None)

    def one(value: object) -> dt.date | None:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                return None
        return None

    return series.map(one).astype(object)


def normalise_dates(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """With `spec.date_timezone` set, timezone-aware timestamps in the date column become the
    calendar date in that timezone (naive values are left as they are); otherwise, or when
    there are none, `frame` is returned unchanged, and `validate` rejects aware dates."""
    column = spec.date_column
    if spec.date_timezone is None or column not in frame.columns:
        return frame
    series = frame[column]
    if not date_problems(series).aware:
        return frame

    def one(value: object) -> object:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return pd.Timestamp(value).tz_convert(spec.date_timezone).date()
        return value

    if isinstance(series.dtype, pd.DatetimeTZDtype):
        dates = series.dt.tz_convert(spec.date_timezone).dt.date.astype(object)
    else:
        dates = series.map(one).astype(object)
    return frame.assign(**{column: dates})


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
        problems.append(f"missing column(s) {missing} ({len(missing)} of {len(spec.columns)} "
                        "declared)")
    if wrong:
        found = ", ".join(f"{c} is {d} (expected {spec.columns[c].dtype})" for c, d in wrong.items())
        problems.append(f"wrong dtype(s) in {len(wrong)} column(s): {found}")
    meta: dict[str, Any] = {"missing_columns": missing, "wrong_dtypes": wrong,
                            "extra_columns": extra}
    if spec.date_column in frame.columns and spec.date_column not in wrong:
        dates = date_problems(frame[spec.date_column])
        problems += dates.describe(spec.date_column, len(frame))
        if dates.aware or dates.timed:
            meta["date_problems"] = dataclasses.asdict(dates)
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
    # Rows not dated on the file's own day (or not dates at all) are out of its range.
    if day is not None and spec.date_column in frame.columns and (
            n := int((calendar_dates(frame[spec.date_column]) != day).sum())):
        out_of_range[spec.date_column] = n
    if out_of_range:
        return CheckOutcome(
            "ranges", False, f"values out of range in column(s) {_fmt(out_of_range)} "
                             f"(of {len(frame)} rows)", out_of_range
        )
    return CheckOutcome("ranges", True, "all values within declared ranges", {})


def check_duplicates(frame: pd.DataFrame, spec: DatasetSpec) -> CheckOutcome:
    if spec.key not in frame.columns:
        return CheckOutcome("duplicates", False, f"key column {spec.key!r} is missing: "
                                                 f"{len(frame)} rows unchecked", {})
    n = int(frame[spec.key].duplicated().sum())
    if n:
        return CheckOutcome(
            "duplicates", False, f"{n} duplicate value(s) in key column {spec.key!r}", {spec.key: n}
        )
    return CheckOutcome("duplicates", True, f"key column {spec.key!r} is unique", {})


def check_completeness(frame: pd.DataFrame, spec: DatasetSpec, expected: int) -> CheckOutcome:
    """Rows against the expected count: at least `min_completeness` of it, and at most
    `max_rows_factor` times it (a volume bound: a day of 20x the usual rows is a fault
    upstream, not news). Counts rows, so it names the key column as the one counted."""
    ratio = len(frame) / expected if expected else 0.0
    bound = int(spec.max_rows_factor * expected)
    meta = {"rows": len(frame), "expected_rows": expected, "ratio": round(ratio, 4)}
    if ratio < spec.min_completeness:
        return CheckOutcome(
            "completeness",
            False,
            f"{len(frame)} of {expected} expected rows ({ratio:.0%}, below "
            f"{spec.min_completeness:.0%}): short by {expected - len(frame)} (rows of key "
            f"{spec.key})",
            meta,
        )
    if len(frame) > bound:
        return CheckOutcome(
            "completeness",
            False,
            f"{len(frame)} rows, above the bound of {bound} ({spec.max_rows_factor:g}x the "
            f"{expected} expected): {len(frame) - bound} too many (rows of key {spec.key})",
            {**meta, "max_rows": bound},
        )
    return CheckOutcome("completeness", True, f"{len(frame)} of {expected} expected rows", meta)


def check_unexpected_columns(frame: pd.DataFrame, spec: DatasetSpec) -> CheckOutcome:
    extra = [c for c in frame.columns if c not in spec.columns]
    if extra:
        return CheckOutcome("unexpected_columns", False,
                            f"{len(extra)} unexpected column(s) {extra}: ignored downstream",
                            {"extra": extra})
    return CheckOutcome("unexpected_columns", True, "no unexpected columns", {})


def validate(
    frame: pd.DataFrame, spec: DatasetSpec, *, day: dt.date | None, expected_rows: int
) -> list[CheckOutcome]:
    """Every check of CHECK_NAMES, in order, for one day's rows; a failing outcome's
    description starts with `day` (when given). Call `normalise_dates` first when the spec
    sets `date_timezone`."""
    outcomes = [
        check_schema(frame, spec),
        check_nulls(frame, spec),
        check_ranges(frame, spec, day),
        check_duplicates(frame, spec),
        check_completeness(frame, spec, expected_rows),
        check_unexpected_columns(frame, spec),
    ]
    if day is None:
        return outcomes
    return [o if o.passed else dataclasses.replace(o, description=f"{day}: {o.description}")
            for o in outcomes]
