"""What every stage of one model's chain shares: its spec, its asset keys, its group."""


from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_platform.pipeline.keys import model_key
from ml_platform.specs import ModelSpec


@dataclass(frozen=True)
class Chain:
    """One model's chain of assets, as the stage builders see it."""

    spec: ModelSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def key(self, stage: str) -> dg.AssetKey:
        return model_key(self.spec.name, stage)

    @property
    def group(self) -> dict[str, Any]:
        """Keyword arguments of every asset of the chain: its group and owner."""
        return {"group_name": self.spec.name, "owners": [f"team:{self.spec.owner}"]}


def markdown_metrics(rows: dict[str, dict[str, float] | None]) -> str:
    """A Markdown table of metrics, one row per model (candidate, champion)."""
    metrics = sorted({m for values in rows.values() if values for m in values})
    lines = ["| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for who, values in rows.items():
        cells = [f"{values[m]:.4g}" if values and m in values else "-" for m in metrics]
        lines.append(f"| {who} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

