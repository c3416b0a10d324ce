"""Process-group setup for torchrun and a sampler that makes N processes see the same global batches.

``GlobalBatchSampler`` draws one permutation per epoch from (seed, epoch), cuts it into global
batches of ``batch_size`` and gives rank r the r-th equal slice of each. With one process that is
the whole global batch, so a 2-process run and a 1-process run optimise on the same samples per
step, and DDP's gradient averaging makes their updates equal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (0, 0, 1 when not distributed)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def setup(device: str) -> tuple[torch.device, bool]:
    """Pick the device and, under torchrun, join the process group. Returns (device, distributed)."""
    rank, local_rank, size = world()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev, size > 1


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every process (so all ranks stop together when one cannot go on)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor(int(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def mean_across(value: torch.Tensor) -> torch.Tensor:
    """Average a scalar tensor over all processes (identity when not distributed)."""
    if dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's slice of each global batch; the last incomplete global batch is dropped.

    ``offset(epoch)`` (e.g. a fresh-per-epoch dataset's ``epoch_offset``) is added to every index, so
    epoch ``e`` can draw items ``offset(e) .. offset(e) + size - 1`` of an endless dataset.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, offset: Callable[[int], int] | None = None) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} processes")
        if size < batch_size:
            raise ValueError(f"dataset of {size} items is smaller than one global batch of {batch_size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch = 0
        self.offset = offset

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        if self.offset is not None:
            base = self.offset(self.epoch)
            order = [base + i for i in order]
        local = self.batch_size // self.world_size
        for b in range(len(self)):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield batch[self.rank * local:(self.rank + 1) * local]
