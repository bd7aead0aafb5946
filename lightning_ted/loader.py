"""The per-epoch train loader: the kept samples with their indices and weights, shuffled from
``(seed, epoch)``, sharded across ranks and resumable mid-epoch.

``DynamicPruningDataModule`` builds one ``PruningDataLoader`` per epoch from these pieces; each batch is
an ``IndexedSample(data, index, weight)`` that the datamodule unwraps before the model sees it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate
from torch.utils.data.distributed import DistributedSampler

from lightning_ted.selection import Selection, epoch_generator


class IndexedSample(NamedTuple):
    """A training item (or collated batch) with its dataset index and loss weight."""

    data: Any
    index: Any
    weight: Any


@dataclass
class BatchContext:
    """What the current training batch carries besides the user's data (set per step)."""

    index: Tensor
    weight: Tensor
    loss_grad: Tensor | None = None  # dL/dl_k, captured by ``pruned_loss`` during backward
    loss: Tensor | None = None  # the per-sample loss with its graph, for the callback's first-step checks

    def capture_loss_grad(self, grad: Tensor) -> None:
        self.loss_grad = grad.detach()


class Collated(NamedTuple):
    """A batch that is already collated (see ``KeptDataset.gather_tensors``)."""

    batch: Any


class KeptDataset(Dataset):
    """The kept samples of one epoch, each returned as ``IndexedSample(item, index, weight)``."""

    def __init__(self, base: Dataset, selection: Selection, gather_tensors: bool = False) -> None:
        self.base = base
        self.selection = selection
        # a TensorDataset with the default collate: index its tensors once per batch (what default_collate
        # would build from the single items, without the per-item Python calls and the stack)
        self.gather_tensors = gather_tensors and isinstance(base, TensorDataset)

    def __len__(self) -> int:
        return len(self.selection)

    def __getitem__(self, pos: int) -> IndexedSample:
        index = int(self.selection.indices[pos])
        weight = 1.0 if pos < self.selection.num_unit_weight else self.selection.weight
        return IndexedSample(self.base[index], index, weight)

    def __getitems__(self, positions: list[int]) -> IndexedSample:
        """A whole batch at once (the DataLoader calls this when it exists): index and weight tensors are
        looked up with one tensor op each instead of per sample."""
        pos = torch.as_tensor(positions, dtype=torch.int64)
        index = self.selection.indices[pos]
        if self.gather_tensors:
            batch = Collated([t[index] for t in self.base.tensors])
            return IndexedSample(batch, index, self.selection.weight_at(pos))
        getitems = getattr(self.base, "__getitems__", None)
        keys = index.tolist()
        items = getitems(keys) if getitems is not None else [self.base[i] for i in keys]
        return IndexedSample(items, index, self.selection.weight_at(pos))


_CHUNK = 1 << 16


class EpochShuffleSampler(DistributedSampler):
    """This rank's share of a permutation of ``range(n)`` drawn from ``(seed, epoch)``.

    The permutation is the same on every rank and on every ``iter()`` call (Lightning may create the
    train iterator twice when resuming). Ranks take every ``num_replicas``-th position; like
    ``DistributedSampler``, the permutation is padded with its first ``< num_replicas`` entries so every
    rank gets ``ceil(n / num_replicas)`` samples. Being a ``DistributedSampler``, Lightning uses it as is
    instead of wrapping it (which would materialise the epoch as a Python list).
    """

    def __init__(self, n: int, seed: int, epoch: int, num_replicas: int = 1, rank: int = 0) -> None:
        # DistributedSampler.__init__ is not called: it needs a dataset and an initialised process group.
        self.n, self.seed, self.epoch = n, seed, epoch
        self.num_replicas, self.rank = num_replicas, rank
        self.start = 0  # positions of this rank's shard already trained (mid-epoch resume)
        self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle, self.drop_last = True, False

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the epoch is fixed when the loader is built for it (the kept set depends on it too)."""

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch, stream=1))
        pad = self.total_size - self.n
        if pad:
            order = torch.cat([order, order.repeat(math.ceil(pad / self.n))[:pad]])
        shard = order[self.rank : self.total_size : self.num_replicas][self.start :]
        for chunk in shard.split(_CHUNK):  # never one Python list of the whole epoch
            yield from chunk.tolist()


@dataclass
class EpochCursor:
    """How far training got through one epoch's loader: the state a mid-epoch checkpoint must carry."""

    epoch: int
    batches: int = 0  # training batches transferred to the model so far in this epoch


class PruningDataLoader(DataLoader):
    """The train loader of one epoch, resumable mid-epoch.

    Lightning saves ``state_dict()`` of a train loader that has one in every checkpoint and hands it to
    ``load_state_dict()`` on resume. The cursor counts batches the model received (not batches the
    fetcher prefetched), so a resumed run continues with the first batch the interrupted run did not
    train on: nothing is repeated or skipped.
    """

    def __init__(self, *args: Any, cursor: EpochCursor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor = cursor

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "batches": self.cursor.batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches"])
        if epoch != self.cursor.epoch:
            raise RuntimeError(
                f"the checkpoint's train loader stopped in epoch {epoch} but Lightning resumes epoch "
                f"{self.cursor.epoch}; the checkpoint does not match its training progress."
            )
        self.cursor.batches = batches
        self.sampler.start = min(batches * (self.batch_size or 1), len(self.sampler))


class IndexedCollate:
    """Collates ``IndexedSample`` items with the user's ``collate_fn`` applied to the data part."""

    def __init__(self, collate_fn: Any = None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, items: list[IndexedSample] | IndexedSample) -> IndexedSample:
        if isinstance(items, IndexedSample):  # a batch from KeptDataset.__getitems__
            data = items.data.batch if isinstance(items.data, Collated) else self.collate_fn(items.data)
            return IndexedSample(data, items.index, items.weight)
        data = self.collate_fn([it.data for it in items])
        index = torch.tensor([it.index for it in items], dtype=torch.int64)
        weight = torch.tensor([it.weight for it in items], dtype=torch.float32)
        return IndexedSample(data, index, weight)


def batches_per_rank(kept: int, world: int, batch_size: int, drop_last: bool) -> int:
    """Training batches each rank runs in an epoch that keeps ``kept`` samples (shards padded like ours)."""
    per_rank = math.ceil(kept / world)
    return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
