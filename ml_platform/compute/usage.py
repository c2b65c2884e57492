"""What a training used, measured in the training process itself, and what that cost.

`UsageSampler` runs in every training process (a local child process or a pod's): wall time,
CPU-seconds and peak resident memory from `getrusage` (the process and its waited-for children,
e.g. data-loader workers), and, in one process per node, the node's GPUs through NVML (pynvml,
what MLflow's system metrics read too), sampled by a background thread: GPU-seconds (GPUs held x
wall time), mean utilisation and peak memory. Without pynvml, an NVIDIA driver or a GPU, the GPU
fields say `no GPU`. Rank 0 combines every process's share (`combine`) and, with the request's
price table, estimates the cost (`estimate_cost`). No torch, no Dagster: the entrypoint imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ml_platform.names import Usage

SAMPLE_INTERVAL_S = 1.0
"""NVML's utilisation is an average over its own last sample period (1/6 s to 1 s by GPU): one
sample a second reads all of the time at no measurable cost."""
MIB = 2**20


@dataclass(frozen=True)
class ProcessUsage:
    """What one training process used (with its children), and its node's GPUs if it sampled
    them; `combine` adds up the processes of one training."""

    wall_seconds: float
    cpu_seconds: float
    peak_memory_mib: float
    processes: int = 1
    gpu_names: tuple[str, ...] = ()
    gpu_seconds: float = 0.0
    gpu_utilization_pct: float | None = None
    """Mean over the samples and GPUs; None without a GPU."""
    gpu_peak_memory_mib: float | None = None
    """The most memory in use on one GPU at a sample; None without a GPU."""

    @property
    def gpu_count(self) -> int:
        return len(self.gpu_names)


def combine(parts: Sequence[ProcessUsage]) -> ProcessUsage:
    """One training's usage from its processes' (rank 0 first): rank 0's wall time (the
    training's), the sum of CPU-seconds and GPU-seconds, the largest peak memory of one process,
    the GPUs of every node, their utilisation weighted by GPU-seconds."""
    first = parts[0]
    sampled = [(p.gpu_utilization_pct, p.gpu_seconds) for p in parts
               if p.gpu_names and p.gpu_utilization_pct is not None]
    weight = sum(seconds for _, seconds in sampled)
    util = ((sum(u * seconds for u, seconds in sampled) / weight if weight else sampled[0][0])
            if sampled else None)
    return ProcessUsage(
        wall_seconds=first.wall_seconds,
        cpu_seconds=sum(p.cpu_seconds for p in parts),
        peak_memory_mib=max(p.peak_memory_mib for p in parts),
        processes=sum(p.processes for p in parts),
        gpu_names=tuple(n for p in parts for n in p.gpu_names),
        gpu_seconds=sum(p.gpu_seconds for p in parts),
        gpu_utilization_pct=util,
        gpu_peak_memory_mib=max((p.gpu_peak_memory_mib for p in parts
                                 if p.gpu_peak_memory_mib is not None), default=None),
    )


def _own_rusage() -> tuple[float, float]:
    """CPU-seconds (user + system) and peak resident MiB of this process and its children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    # Linux reports ru_maxrss in KiB; for the children, the largest one's
    return cpu, max(own.ru_maxrss, kids.ru_maxrss) / 1024


def import_nvml() -> Any:
    """The `pynvml` module (package nvidia-ml-py), or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _visible(count: int, env: Mapping[str, str]) -> list[int]:
    """The NVML indices of the GPUs this process may use: `CUDA_VISIBLE_DEVICES` when it lists
    indices (a pod sees only its own GPUs anyway), else all of them."""
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return list(range(count))
    entries = [e.strip() for e in listed.split(",") if e.strip()]
    if not all(e.lstrip("-").isdigit() for e in entries):
        return list(range(count))  # UUIDs or MIG names: not mapped here, every GPU counts
    chosen: list[int] = []
    for index in map(int, entries):
        if not 0 <= index < count:
            break  # CUDA stops at the first invalid entry
        chosen.append(index)
    return chosen


class UsageSampler:
    """Measures this process from `start` to `stop`; with `gpus`, also samples the GPUs NVML
    sees every `interval` seconds in a daemon thread (one sampler per node does, so a node's
    GPUs are counted once). `nvml`: the NVML module to use (default: pynvml, if installed)."""

    def __init__(self, *, gpus: bool = True, interval: float = SAMPLE_INTERVAL_S,
                 nvml: Any = None, env: Mapping[str, str] | None = None) -> None:
        self._want_gpus, self._interval, self._nvml = gpus, interval, nvml
        self._env = os.environ if env is None else env
        self._handles: list[Any] = []
        self._names: tuple[str, ...] = ()
        self._util_sum, self._util_samples, self._peak_mem = 0.0, 0, 0.0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._began = 0.0
        self._result: ProcessUsage | None = None

    def start(self) -> UsageSampler:
        self._began = time.monotonic()
        if self._want_gpus:
            self._open_gpus()
        if self._handles:
            self._sample()  # a training shorter than the interval still has one
            self._thread = threading.Thread(target=self._loop, name="usage-sampler", daemon=True)
            self._thread.start()
        return self

    def _open_gpus(self) -> None:
        nvml = self._nvml if self._nvml is not None else import_nvml()
        if nvml is None:
            return
        try:
            nvml.nvmlInit()
        except Exception:  # NVMLError: no driver, no library (a CPU node, a laptop)
            return
        try:
            indices = _visible(int(nvml.nvmlDeviceGetCount()), self._env)
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
            names = tuple(_text(nvml.nvmlDeviceGetName(h)) for h in handles)
        except Exception:  # a GPU lost or unsupported: measured as none rather than failing
            handles, names = [], ()
        if not handles:
            nvml.nvmlShutdown()
            return
        self._nvml, self._handles, self._names = nvml, handles, names

    def _loop(self) -> None:
        while not self._done.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        try:
            readings = [(float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu),
                         float(self._nvml.nvmlDeviceGetMemoryInfo(h).used) / MIB)
                        for h in self._handles]
        except Exception:  # one failed reading (a GPU reset) skips this sample only
            return
        with self._lock:
            for util, used in readings:
                self._util_sum += util
                self._util_samples += 1
                self._peak_mem = max(self._peak_mem, used)

    def stop(self) -> ProcessUsage:
        """What this process used since `start` (the same answer on later calls)."""
        if self._result is not None:
            return self._result
        wall = time.monotonic() - self._began
        if self._thread is not None:
            self._done.set()
            self._thread.join()
            self._sample()
        cpu, peak = _own_rusage()
        with self._lock:
            gpu = bool(self._handles and self._util_samples)
            self._result = ProcessUsage(
                wall_seconds=wall, cpu_seconds=cpu, peak_memory_mib=peak,
                gpu_names=self._names if gpu else (),
                gpu_seconds=len(self._handles) * wall if gpu else 0.0,
                gpu_utilization_pct=self._util_sum / self._util_samples if gpu else None,
                gpu_peak_memory_mib=self._peak_mem if gpu else None,
            )
        if self._handles:
            # nothing left to measure: a failed shutdown changes nothing
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
        return self._result


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_QUANTITY = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)")
_SUFFIXES = {"": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6),
             "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
             "E": Decimal(10**18), "Ki": Decimal(2**10), "Mi": Decimal(2**20),
             "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60)}


def quantity(text: str) -> float:
    """A Kubernetes quantity (`500m`, `2`, `4Gi`, `1.5G`) as a number (cores, bytes)."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi)")
    try:
        return float(Decimal(match.group(1)) * _SUFFIXES[match.group(2)])
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from exc


@dataclass(frozen=True)
class Requests:
    """What the training's pods asked for, each (the spec's `compute`), and how many pods."""

    cpu: str = ""
    memory: str = ""
    gpu: int = 0
    nodes: int = 1


def estimate_cost(usage: ProcessUsage, requests: Requests,
                  prices: Mapping[str, float]) -> dict[str, float]:
    """The cost of a training by `prices` (settings.PRICE_FIELDS): GPU-hours as measured (the
    GPUs the training's processes held, for its wall time), plus the requested cores and GiB of
    every pod for the training's wall time (what a cluster reserves, hence bills)."""
    hours = usage.wall_seconds / 3600
    cores = quantity(requests.cpu) if requests.cpu else 0.0
    gib = quantity(requests.memory) / 2**30 if requests.memory else 0.0
    parts = {
        Usage.COST_GPU: usage.gpu_seconds / 3600 * prices.get("gpu_hour", 0.0),
        Usage.COST_CPU: cores * requests.nodes * hours * prices.get("cpu_hour", 0.0),
        Usage.COST_MEMORY: gib * requests.nodes * hours * prices.get("memory_gib_hour", 0.0),
    }
    return {**parts, Usage.COST: sum(parts.values())}


@dataclass(frozen=True)
class UsageRecord:
    """A training's usage as the MLflow run records it: numbers as metrics, the rest as tags."""

    metrics: dict[str, float]
    tags: dict[str, str]

    def summary(self) -> dict[str, float | str]:
        """Metrics and tags, plus `no GPU` in the GPU fields of a training without one: what the
        `trained` asset's metadata shows."""
        missing: dict[str, float | str] = {} if Usage.GPU_UTILIZATION in self.metrics else {
            Usage.GPU_UTILIZATION: Usage.NO_GPU, Usage.GPU_PEAK_MEMORY_MIB: Usage.NO_GPU}
        return {**self.metrics, **self.tags, **missing}


def usage_record(usage: ProcessUsage, requests: Requests,
                 prices: Mapping[str, float] | None) -> UsageRecord:
    """The record of one training: its usage, its pods' requests and, with a price table, its
    estimated cost (absent without one, never 0)."""
    metrics: dict[str, float] = {
        Usage.WALL_SECONDS: usage.wall_seconds, Usage.CPU_SECONDS: usage.cpu_seconds,
        Usage.PEAK_MEMORY_MIB: usage.peak_memory_mib, Usage.PROCESSES: usage.processes,
        Usage.GPU_COUNT: usage.gpu_count, Usage.GPU_SECONDS: usage.gpu_seconds,
    }
    if usage.gpu_utilization_pct is not None:
        metrics[Usage.GPU_UTILIZATION] = usage.gpu_utilization_pct
        metrics[Usage.GPU_PEAK_MEMORY_MIB] = usage.gpu_peak_memory_mib or 0.0
    if prices:
        metrics.update(estimate_cost(usage, requests, prices))
    tags = {
        Usage.GPU: ", ".join(usage.gpu_names) or Usage.NO_GPU,
        Usage.REQUEST_CPU: requests.cpu or "-", Usage.REQUEST_MEMORY: requests.memory or "-",
        Usage.REQUEST_GPU: str(requests.gpu), Usage.REQUEST_NODES: str(requests.nodes),
        Usage.PRICES: json.dumps(dict(prices), sort_keys=True) if prices else Usage.NO_PRICES,
    }
    return UsageRecord(metrics, tags)
