"""Unit tests of `ml_platform.tracking.gates`: `evaluate_gates` over metric dicts (spec
thresholds, the not-worse-than-champion comparison in both directions and with tolerance,
missing metrics) and the report's summary text. Pure functions over in-memory PromotionSpecs;
no tracking server is involved and nothing is faked."""

from __future__ import annotations

import pytest

from ml_platform.specs import Gate, PromotionSpec, load_specs
from ml_platform.tracking.gates import GateResult, evaluate_gates


def _spec(**overrides: object) -> PromotionSpec:
    fields: dict[str, object] = {
        "gates": (Gate(metric="mae", op="<", threshold=12),
                  Gate(metric="size_mb", op="<", threshold=200)),
        "primary_metric": "mae",
        "higher_is_better": False,
        "not_worse_than_champion": True,
        "champion_tolerance": 0.0,
    }
    return PromotionSpec(**{**fields, **overrides})


GOOD = {"mae": 6.0, "rmse": 8.0, "r2": 0.97, "size_mb": 0.1}


def test_candidate_within_thresholds_passes_without_champion() -> None:
    report = evaluate_gates(_spec(), GOOD, None, None)
    assert report.passed
    assert [r.gate for r in report.results] == ["mae < 12", "size_mb < 200"]
    assert [r.value for r in report.results] == [6.0, 0.1]
    assert report.failures == []
    assert report.summary() == "all gates passed: mae < 12, size_mb < 200"
    assert report.champion_version is None


@pytest.mark.parametrize(("metrics", "failing"), [
    ({**GOOD, "mae": 12.0}, ["mae < 12 (got 12)"]),
    ({**GOOD, "mae": 30.5}, ["mae < 12 (got 30.5)"]),
    ({**GOOD, "size_mb": 250.0}, ["size_mb < 200 (got 250)"]),
    ({**GOOD, "mae": 13.0, "size_mb": 999.0}, ["mae < 12 (got 13)", "size_mb < 200 (got 999)"]),
])
def test_threshold_failures_are_named_in_the_summary(
    metrics: dict[str, float], failing: list[str]
) -> None:
    report = evaluate_gates(_spec(), metrics, None, None)
    assert not report.passed
    assert report.failures == failing
    assert report.summary() == "failed gate(s): " + "; ".join(failing)


def test_missing_metric_fails_its_gate() -> None:
    report = evaluate_gates(_spec(), {"mae": 5.0}, None, None)
    assert not report.passed
    assert report.results[1] == GateResult("size_mb < 200", None, False)
    assert report.failures == ["size_mb < 200"]
    assert "size_mb < 200" in report.summary()


def test_no_champion_means_no_champion_gate() -> None:
    report = evaluate_gates(_spec(), GOOD, None, None)
    assert len(report.results) == len(_spec().gates)
    assert not any("champion" in r.gate for r in report.results)


def test_worse_than_champion_fails() -> None:
    report = evaluate_gates(_spec(), {**GOOD, "mae": 7.0}, {**GOOD, "mae": 6.5}, "3")
    assert not report.passed
    assert report.champion_version == "3"
    champion_gate = report.results[-1]
    assert champion_gate == GateResult("mae <= champion v3 (6.5)", 7.0, False)
    assert report.summary() == "failed gate(s): mae <= champion v3 (6.5) (got 7)"


def test_equal_to_champion_passes_with_zero_tolerance() -> None:
    report = evaluate_gates(_spec(champion_tolerance=0.0), GOOD, dict(GOOD), "2")
    assert report.passed
    assert report.results[-1].gate == "mae <= champion v2 (6)"
    assert "champion v2" in report.summary()


def test_better_than_champion_passes() -> None:
    report = evaluate_gates(_spec(), {**GOOD, "mae": 5.0}, GOOD, "2")
    assert report.passed
    assert len(report.results) == 3


def test_tolerance_allows_slightly_worse() -> None:
    spec = _spec(champion_tolerance=0.5)
    assert evaluate_gates(spec, {**GOOD, "mae": 6.4}, GOOD, "1").passed
    assert not evaluate_gates(spec, {**GOOD, "mae": 6.6}, GOOD, "1").passed


def test_higher_is_better_compares_the_other_way() -> None:
    spec = _spec(gates=(Gate(metric="r2", op=">", threshold=0.5),), primary_metric="r2",
                 higher_is_better=True, champion_tolerance=0.01)
    champion = {"r2": 0.9}
    assert evaluate_gates(spec, {"r2": 0.95}, champion, "4").passed
    assert evaluate_gates(spec, {"r2": 0.895}, champion, "4").passed
    worse = evaluate_gates(spec, {"r2": 0.85}, champion, "4")
    assert not worse.passed
    assert worse.failures == ["r2 >= champion v4 (0.9) (got 0.85)"]


def test_champion_comparison_can_be_switched_off() -> None:
    report = evaluate_gates(_spec(not_worse_than_champion=False), {**GOOD, "mae": 11.0}, GOOD,
                            "5")
    assert report.passed
    assert len(report.results) == 2


def test_threshold_and_champion_failures_are_both_reported() -> None:
    report = evaluate_gates(_spec(), {**GOOD, "mae": 14.0}, GOOD, "1")
    assert report.failures == ["mae < 12 (got 14)", "mae <= champion v1 (6) (got 14)"]


def test_shipped_spec_gates() -> None:
    spec = next(s for s in load_specs() if s.name == "listing_price").promotion
    assert evaluate_gates(spec, GOOD, None, None).passed
    assert not evaluate_gates(spec, {**GOOD, "mae": 12.5}, None, None).passed

