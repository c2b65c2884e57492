"""What the orchestrator asks of one training run: the contract between the `trained` asset
and the training entrypoint, identical for a local child process and a Kubernetes pod."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ENTRYPOINT = "ml_platform.compute.entrypoint"


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
    query_columns: list[str] = field(default_factory=list)
    """Ranking: the columns naming one query (date, user); its metrics are per query."""
    processes: int = 1
    """Training processes per node (one per GPU on GPU nodes): more than one trains with DDP."""
    nodes: int = 1

    def __post_init__(self) -> None:
        if self.processes < 1 or self.nodes < 1:
            raise ValueError(f"processes and nodes must be >= 1, got {self.processes}, {self.nodes}")

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes

    def to_extras(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_extras(cls, extras: dict[str, Any]) -> TrainingRequest:
        return cls(**{k: extras[k] for k in cls.__dataclass_fields__ if k in extras})

    def command(self, python: str = "python", *, rdzv_endpoint: str | None = None) -> list[str]:
        """The command that runs this training on one node.

        One process: the entrypoint itself. More: the entrypoint under `torchrun`, which starts
        `processes` ranks here and (with `nodes` > 1) meets the other nodes' ranks at
        `rdzv_endpoint` (`host:port` every node reaches, e.g. a headless service of the job)."""
        if self.world_size == 1:
            return [python, "-m", ENTRYPOINT]
        launcher = [python, "-m", "torch.distributed.run", f"--nproc-per-node={self.processes}",
                    f"--nnodes={self.nodes}"]
        if self.nodes == 1:
            launcher.append("--standalone")  # rendezvous on a free local port
        elif rdzv_endpoint is None:
            raise ValueError(f"{self.nodes} nodes need a rendezvous endpoint (host:port)")
        else:
            launcher += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}",
                         f"--rdzv-id={self.mlflow_run_id}"]
        return [*launcher, "-m", ENTRYPOINT]
