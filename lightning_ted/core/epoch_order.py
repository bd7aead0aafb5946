"""The order of one epoch's kept samples: a permutation drawn from ``(seed, epoch)``, sharded across ranks
like ``DistributedSampler`` and able to start part-way (a mid-epoch resume)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data.distributed import DistributedSampler

from lightning_ted.core.selection import epoch_generator

_CHUNK = 1 << 16


class EpochShuffleSampler(DistributedSampler):
    """This rank's share of a permutation of ``range(n)`` drawn from ``(seed, epoch)`` (``range(n)`` itself
    with ``shuffle=False``).

    The permutation is the same on every rank and on every ``iter()`` call (Lightning may create the
    train iterator twice when resuming). Ranks take every ``num_replicas``-th position; like
    ``DistributedSampler``, the permutation is padded with its first ``< num_replicas`` entries so every
    rank gets ``ceil(n / num_replicas)`` samples. ``start`` skips the first ``start`` positions of the
    epoch's order (all ranks together: a mid-epoch resume, exact for any batch size or world size). Being
    a ``DistributedSampler``, Lightning uses it as is instead of wrapping it (which would materialise the
    epoch as a Python list).
    """

    def __init__(
        self, n: int, seed: int, epoch: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True
    ) -> None:
        # DistributedSampler.__init__ is not called: it needs a dataset and an initialised process group.
        self.n, self.seed, self.epoch = n, seed, epoch
        self.num_replicas, self.rank = num_replicas, rank
        self.start = 0  # positions of the epoch's order already trained, all ranks together
        self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle, self.drop_last = shuffle, False

    def __len__(self) -> int:
        return self.num_samples

    def remaining(self) -> int:
        """Samples this rank still serves after ``start`` (padded like the whole epoch)."""
        return math.ceil(max(self.n - self.start, 0) / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the epoch is fixed when the loader is built for it (the kept set depends on it too)."""

    def order(self) -> Tensor:
        """The epoch's order of positions ``0..n-1`` (before sharding and padding)."""
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch, stream=1))

    def shard(self) -> Tensor:
        """This rank's positions from ``start`` on, as one int64 tensor (what ``iter()`` yields)."""
        order = self.order()
        rest = order[min(self.start, self.n) :]
        pad = (-rest.numel()) % self.num_replicas
        if pad and self.n:
            rest = torch.cat([rest, order.repeat(math.ceil(pad / self.n))[:pad]])
        return rest[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        for chunk in self.shard().split(_CHUNK):  # never one Python list of the whole epoch
            yield from chunk.tolist()
