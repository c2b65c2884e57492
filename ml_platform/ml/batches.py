"""Where the training loop's batches come from.

Tabular training sets usually fit on the device: then the rows are copied there once and each
batch is an index into them (no host work per step, nothing to feed). A training set too big
for the GPU stays in host memory and is streamed: DataLoader worker processes (as many as the
pod's CPUs allow, `loader_workers`; started each epoch) gather batches ahead of use, a
pin-memory thread pins them, and each is copied to the GPU as an asynchronous DMA that does not
hold up the Python thread. Both give the same batches in the same order, so the same seed gives
the same model either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

# Stream when the training rows would take more than this share of the GPU's free memory
# (the rest is for activations, the optimizer and the validation rows).
DEVICE_SHARE = 0.5
Batch = tuple[torch.Tensor, torch.Tensor]


def batch_sizes(rows: int, batch: int) -> list[int]:
    """`rows` cut into batches of `batch` rows, the last one shorter."""
    full, rest = divmod(rows, batch)
    return [batch] * full + ([rest] if rest else [])


def host_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def to_device(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    tensor = host_tensor(array) if isinstance(array, np.ndarray) else array
    if device.type == "cuda":
        # Staged through pinned memory so the host-to-device copy is a single async DMA.
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether `nbytes` of training rows should live on `device` (always, for the CPU)."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free


class ResidentBatches:
    """Rows on the device; a batch is an index into them."""

    def __init__(self, x: torch.Tensor, target: torch.Tensor, device: torch.device) -> None:
        self.x, self.target = to_device(x, device), to_device(target, device)
        self.device = device

    def epoch(self, order: torch.Tensor, sizes: list[int]) -> Iterator[Batch]:
        order = order.to(self.device)
        for idx in order.split(sizes):
            yield self.x[idx], self.target[idx]


class _Rows(Dataset[Batch]):
    """Rows in host memory, fetched a batch at a time (one gather, not one call per row)."""

    def __init__(self, x: torch.Tensor, target: torch.Tensor) -> None:
        self.x, self.target = x, target

    def __len__(self) -> int:
        return len(self.x)

    def __getitems__(self, rows: torch.Tensor) -> Batch:
        return self.x[rows], self.target[rows]


class _EpochOrder(Sampler[torch.Tensor]):
    """The current epoch's row order, cut into batches of `sizes` rows (set before each epoch;
    a tensor, not a list: a list of Python ints costs ~36 bytes a row)."""

    def __init__(self) -> None:
        self.order = torch.empty(0, dtype=torch.int64)
        self.sizes: list[int] = []

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.order.split(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)


def _as_is(batch: Batch) -> Batch:
    return batch


class StreamedBatches:
    """Rows in host memory, batches gathered by `workers` DataLoader processes (0: in this
    process), pinned and copied to the device ahead of use."""

    def __init__(self, x: torch.Tensor, target: torch.Tensor, device: torch.device,
                 workers: int) -> None:
        self.device = device
        self._order = _EpochOrder()
        # torch's stubs type batch samplers as yielding lists and collate functions as taking
        # them; index tensors and a pass-through collate are what DataLoader accepts here.
        self.loader = DataLoader(_Rows(x, target), batch_sampler=cast(Any, self._order),
                                 num_workers=workers, collate_fn=cast(Any, _as_is),
                                 pin_memory=device.type == "cuda",
                                 prefetch_factor=4 if workers else None)

    def epoch(self, order: torch.Tensor, sizes: list[int]) -> Iterator[Batch]:
        self._order.order, self._order.sizes = order.cpu(), sizes
        for x, target in self.loader:
            yield x.to(self.device, non_blocking=True), target.to(self.device, non_blocking=True)
