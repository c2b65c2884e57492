"""What the orchestrator asks of one training run: the contract between the `trained` asset
and the training entrypoint, identical for a local child process and a Kubernetes pod."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainingRequest:
    model: str
    task: str
    feature_builder: str
    target: str
    training_set_uri: str
    mlflow_run_id: str
    checkpoint_dir: str
    hidden: list[int]
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.0
    seed: int = 0
    shuffle_labels: bool = False
    pip_requirements: list[str] = field(default_factory=list)

    def to_extras(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_extras(cls, extras: dict[str, Any]) -> TrainingRequest:
        return cls(**{k: extras[k] for k in cls.__dataclass_fields__ if k in extras})
