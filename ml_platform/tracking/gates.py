"""Promotion gates: pure decisions over metrics, no tracking-server calls."""

from __future__ import annotations

from dataclasses import dataclass, field

from ml_platform.specs import PromotionSpec


@dataclass(frozen=True)
class GateResult:
    gate: str
    value: float | None
    passed: bool


@dataclass(frozen=True)
class GateReport:
    """Every gate's verdict for one candidate; `passed` only when all of them pass."""

    results: tuple[GateResult, ...]
    champion_version: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[str]:
        return [f"{r.gate} (got {r.value:.4g})" if r.value is not None else r.gate
                for r in self.results if not r.passed]

    def summary(self) -> str:
        if self.passed:
            return "all gates passed: " + ", ".join(r.gate for r in self.results)
        return "failed gate(s): " + "; ".join(self.failures)


def evaluate_gates(
    spec: PromotionSpec,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None,
) -> GateReport:
    """Check `candidate` metrics against the spec's gates and, if there is one, the champion
    (both measured on the same frozen test split)."""
    results = []
    for gate in spec.gates:
        value = candidate.get(gate.metric)
        results.append(GateResult(str(gate), value, value is not None and gate.passes(value)))
    if spec.not_worse_than_champion and champion is not None:
        metric, slack = spec.primary_metric, spec.champion_tolerance
        cand, champ = candidate[metric], champion[metric]
        if spec.higher_is_better:
            ok, text = cand >= champ - slack, f"{metric} >= champion v{champion_version} ({champ:.4g})"
        else:
            ok, text = cand <= champ + slack, f"{metric} <= champion v{champion_version} ({champ:.4g})"
        results.append(GateResult(text, cand, ok))
    return GateReport(tuple(results), champion_version)
