"""What the orchestrator asks of one training run: the contract between the `trained` asset
and the training entrypoint, identical for a local child process and a Kubernetes pod."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version as installed_version
from typing import Any

from ml_platform import settings
from ml_platform.compute.usage import Requests
from ml_platform.specs import ModelSpec

ENTRYPOINT = "ml_platform.compute.entrypoint"
# How long nodes wait for each other: GPU pods of a multi-node training may start minutes apart
# (image pulls, a node pool scaling up). torchrun's default is 10 minutes.
RENDEZVOUS_TIMEOUT_S = 1800


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
    """Ranking: the columns naming one query (date and the spec's `training.group_column`):
    the listwise loss and the ranking metrics are per query."""
    loss: str = ""
    """`mse` or `listwise_softmax` (ranking only); empty: the task's default
    (`ml.train.default_loss`: listwise for ranking, MSE for regression)."""
    training_set_hash: str = ""
    """The training set's content hash: the digest of the run's datasets. Empty: the run's
    `ml_platform.training_set_hash` tag."""
    partitions: list[str] = field(default_factory=list)
    """The raw partitions (days) the training set was built from, tagged on the run's datasets.
    Empty: the run's `dagster.partitions` tag."""
    processes: int = 1
    """Training processes per node (one per GPU on GPU nodes): more than one trains with DDP."""
    nodes: int = 1
    checkpoint_mirror: str = ""
    """Where rank 0 also keeps the newest checkpoint (an `s3://` URI like `training_set_uri`),
    for a retry on a fresh disk (a new pod) to resume from; empty: `checkpoint_dir` only."""
    rendezvous: str = ""
    """With `nodes` > 1: node 0's `host:port`, where torchrun's static rendezvous meets (the
    Kubernetes backend names a Service per attempt)."""
    cpu: str = ""
    """What each pod requests (the spec's `compute`): recorded with the usage, and what the
    CPU and memory parts of the cost are of. Empty: not known (no cost for that part)."""
    memory: str = ""
    gpu: int = 0
    prices: dict[str, float] = field(default_factory=dict)
    """The price table of the cost estimate (`settings.PRICE_FIELDS`): the spec's
    `compute.prices`, else the cluster's (`$ML_PLATFORM_PRICES`); empty: no estimate."""

    @classmethod
    def for_spec(cls, spec: ModelSpec, *, training_set_uri: str, mlflow_run_id: str,
                 checkpoint_dir: str, checkpoint_mirror: str = "", training_set_hash: str = "",
                 partitions: Sequence[str] = ()) -> TrainingRequest:
        """The request for training `spec` on one training set, in one MLflow run: the only
        mapping from a spec to a request (the `trained` step and `ml-platform k8s render`)."""
        tr = spec.training
        prices = (spec.compute.prices.model_dump() if spec.compute.prices is not None
                  else settings.prices() or {})
        return cls(
            model=spec.name, task=tr.task, feature_builder=tr.feature_builder, target=tr.target,
            training_set_uri=training_set_uri, mlflow_run_id=mlflow_run_id,
            checkpoint_dir=checkpoint_dir, checkpoint_mirror=checkpoint_mirror,
            hidden=list(tr.hidden), epochs=tr.epochs, batch_size=tr.batch_size,
            learning_rate=tr.learning_rate, weight_decay=tr.weight_decay, seed=tr.seed,
            shuffle_labels=tr.shuffle_labels, query_columns=list(spec.query_columns),
            training_set_hash=training_set_hash, partitions=list(partitions),
            processes=spec.compute.processes, nodes=spec.compute.nodes,
            pip_requirements=runtime_requirements(),
            cpu=spec.compute.cpu, memory=spec.compute.memory, gpu=spec.compute.gpu,
            prices=prices,
        )

    def __post_init__(self) -> None:
        if self.processes < 1 or self.nodes < 1:
            raise ValueError(f"processes and nodes must be >= 1, got {self.processes}, {self.nodes}")

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes

    @property
    def requests(self) -> Requests:
        return Requests(cpu=self.cpu, memory=self.memory, gpu=self.gpu, nodes=self.nodes)

    def to_extras(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_extras(cls, extras: dict[str, Any]) -> TrainingRequest:
        return cls(**{k: extras[k] for k in cls.__dataclass_fields__ if k in extras})

    def command(self, python: str = "python", *, node_rank: int | None = 0) -> list[str]:
        """The command that runs this training on one node.

        One process: the entrypoint itself. More: the entrypoint under `torchrun`, which starts
        `processes` ranks here. With `nodes` > 1 the nodes meet by static rendezvous at
        `rendezvous`, each with its own `node_rank` (None: torchrun reads it from
        `$PET_NODE_RANK`). Node 0 runs global rank 0, the one that talks to Dagster and MLflow."""
        if self.world_size == 1:
            return [python, "-m", ENTRYPOINT]
        launcher = [python, "-m", "torch.distributed.run", f"--nproc-per-node={self.processes}",
                    f"--nnodes={self.nodes}"]
        if self.nodes == 1:
            launcher.append("--standalone")  # rendezvous on a free local port
        elif not self.rendezvous:
            raise ValueError(f"{self.nodes} nodes need a rendezvous (node 0's host:port)")
        else:
            host, _, port = self.rendezvous.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"rendezvous {self.rendezvous!r} is not host:port")
            if node_rank is not None:
                launcher.append(f"--node-rank={node_rank}")
            launcher += [f"--master-addr={host}", f"--master-port={port}",
                         f"--rdzv-conf=timeout={RENDEZVOUS_TIMEOUT_S}"]
        return [*launcher, "-m", ENTRYPOINT]


def runtime_requirements() -> list[str]:
    """What a logged model needs to load: the exact torch and MLflow of this environment
    (passing them skips seconds of MLflow's requirement inference)."""
    return [f"torch=={installed_version('torch').split('+')[0]}",
            f"mlflow=={installed_version('mlflow')}"]
