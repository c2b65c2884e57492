"""Where and with whom a training process trains: its device, its rank among the data-parallel
processes `torchrun` started, and its shard of the training rows.

One process (the default) and N processes run the same code: a single process is a world of
size 1, so nothing here branches on "distributed or not" beyond skipping the collectives.
Torch is imported inside the functions: the orchestrator imports `available_cpus` from here
without paying for torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    import torch

DEVICE_ENV = "ML_PLATFORM_DEVICE"
"""Forces the device (`cpu`, `cuda`): otherwise CUDA when present, else CPU."""

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place among the training processes (torchrun's RANK, WORLD_SIZE, ...)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints and talks to MLflow and Dagster."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistContext:
        """The context torchrun (or any launcher setting its variables) gave this process."""
        env = os.environ if env is None else env
        ctx = cls(
            rank=int(env.get("RANK", 0)), world_size=int(env.get("WORLD_SIZE", 1)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))),
        )
        if not 0 <= ctx.rank < ctx.world_size or not 0 <= ctx.local_rank < ctx.local_world_size:
            raise ValueError(f"inconsistent launcher environment: {ctx}")
        return ctx


SINGLE = DistContext()


def current_context() -> DistContext:
    """The context of the initialised default process group; `SINGLE` when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        env = DistContext.from_env()
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                           local_rank=env.local_rank, local_world_size=env.local_world_size)
    return SINGLE


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this container in cores (a pod's `limits.cpu`), if it has one."""
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may really use: its affinity, capped by the container's CPU quota.

    `os.cpu_count()` (and torch's default thread count) sees the whole node, so a pod limited to
    2 CPUs on a 64-core node would run 32 threads and spend its quota being throttled."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, math.floor(limit))
    return max(1, cpus)


def threads_per_process(local_world_size: int = 1, cpus: int | None = None) -> int:
    """Intra-op threads for each of `local_world_size` training processes on this machine.

    Each process's share of the CPUs, less one when it has more than one: the process also runs
    the MLflow logging, Pipes and checkpoint threads, and torch's OpenMP workers spin at a
    barrier whenever one of them is preempted, so a fully subscribed CPU loses far more to
    those threads than the core they need (on 2 CPUs, measured in
    benchmarks/training_throughput.py, the shipped MLP trains as fast on one thread as on two
    and keeps that speed while the tracking client and server are busy)."""
    share = (available_cpus() if cpus is None else cpus) // max(1, local_world_size)
    return max(1, share - 1)


def loader_workers(local_world_size: int = 1, cpus: int | None = None) -> int:
    """DataLoader worker processes for each of `local_world_size` training processes when
    batches are streamed from host memory: its share of the CPUs beyond the one its training
    loop drives, at most 8 (gathering tabular rows is cheap; more only adds memory)."""
    share = (available_cpus() if cpus is None else cpus) // max(1, local_world_size)
    return min(8, max(0, share - 1))


def select_device(ctx: DistContext = SINGLE) -> torch.device:
    """CUDA device `local_rank` when there is one GPU per local process, else the CPU.

    `ML_PLATFORM_DEVICE=cpu` forces the CPU (and `cuda` insists on a GPU)."""
    import torch

    forced = os.environ.get(DEVICE_ENV, "").strip().lower()
    if forced == "cpu":
        return torch.device("cpu")
    enough_gpus = torch.cuda.is_available() and torch.cuda.device_count() >= ctx.local_world_size
    if forced == "cuda" and not enough_gpus:
        raise RuntimeError(
            f"{DEVICE_ENV}=cuda but {torch.cuda.device_count()} GPU(s) for "
            f"{ctx.local_world_size} local process(es)"
        )
    if forced not in ("", "cuda"):
        raise ValueError(f"{DEVICE_ENV}={forced!r}: use 'cpu' or 'cuda'")
    return torch.device("cuda", ctx.local_rank) if enough_gpus else torch.device("cpu")


def autocast(device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA (no loss scaling needed: bf16 has fp32's range); nothing on CPU,
    so CPU runs stay bit-for-bit reproducible."""
    import torch

    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def distributed_session(ctx: DistContext | None = None,
                        timeout: timedelta = timedelta(minutes=30)
                        ) -> Iterator[tuple[DistContext, torch.device]]:
    """Pick this process's device and, in a world of more than one process, join the process
    group (NCCL on GPUs, gloo on CPUs) for the duration of the block.

    Also sizes torch's intra-op threads to this process's share of the container's CPUs
    (`threads_per_process`)."""
    import torch

    ctx = DistContext.from_env() if ctx is None else ctx
    device = select_device(ctx)
    torch.set_num_threads(threads_per_process(ctx.local_world_size))
    if not ctx.is_distributed:
        yield ctx, device
        return
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", rank=ctx.rank, world_size=ctx.world_size,
        timeout=timeout, device_id=device if device.type == "cuda" else None,
    )
    try:
        yield ctx, device
    finally:
        dist.destroy_process_group()


def shard_order(n: int, epoch: int, seed: int, ctx: DistContext = SINGLE) -> torch.Tensor:
    """The row indices this rank trains on in `epoch`: exactly `DistributedSampler`'s split.

    Every rank draws the same permutation (seeded by `seed + epoch`, not by the global RNG,
    so a resumed run shuffles as the uninterrupted one did), pads it to a multiple of the world
    size by repeating its head, and takes every `world_size`-th row from its rank on. With
    per-rank batches of `batch_size / world_size`, the ranks' k-th batches together are the
    single-process k-th batch, so DDP follows the single-process run up to float rounding."""
    import torch

    if n <= 0:
        raise ValueError("cannot shard an empty set")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    if ctx.world_size == 1:
        return order
    total = math.ceil(n / ctx.world_size) * ctx.world_size
    if total > n:
        order = order.repeat(math.ceil(total / n))[:total]
    return order[ctx.rank : total : ctx.world_size]


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum `tensor` over the ranks, in place; a no-op in a single process."""
    if ctx.is_distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_object(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (pickled in memory between our own
    processes); one process: `[obj]`. Every rank must call it at the same point."""
    if not ctx.is_distributed:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: T | None, ctx: DistContext, src: int = 0) -> T:
    """Rank `src`'s `obj` on every rank (pickled in memory between our own processes); the
    other ranks pass None."""
    if not ctx.is_distributed:
        return cast(T, obj)
    import torch.distributed as dist

    box: list[T | None] = [obj]
    dist.broadcast_object_list(box, src=src)
    return cast(T, box[0])
