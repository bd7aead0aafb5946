"""Device-resident train loader: the epoch's shuffle, shard and batch gather as tensor ops on the device,
for a ``TensorDataset`` that fits in accelerator memory (no per-sample Python, no worker processes).

It serves exactly the batches of the standard path (``KeptDataset`` + ``EpochShuffleSampler``) for the same
``(seed, epoch)``: the same order, the same DDP shards, the same ``IndexedSample(data, index, weight)``;
only where the work happens differs. Per epoch one index tensor is copied to the device; per step a batch
is two slices and one gather per dataset tensor, all asynchronous, so nothing waits on the host.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset, default_collate

from lightning_ted.loader import EpochCursor, IndexedSample, batches_per_rank
from lightning_ted.selection import Selection, epoch_generator


def epoch_shard(n: int, seed: int, epoch: int, num_replicas: int = 1, rank: int = 0) -> Tensor:
    """This rank's positions into ``range(n)`` for ``(seed, epoch)``: what ``EpochShuffleSampler`` yields,
    as one int64 tensor (same permutation, padded with its first entries, every ``num_replicas``-th taken)."""
    order = torch.randperm(n, generator=epoch_generator(seed, epoch, stream=1))
    total = math.ceil(n / num_replicas) * num_replicas
    if total > n:
        order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[: total - n]])
    return order[rank:total:num_replicas]


class DeviceResidentLoader:
    """One epoch's train batches gathered on the device from tensors that already live there.

    Resumable mid-epoch like ``PruningDataLoader``: Lightning saves ``state_dict()`` in a checkpoint and
    calls ``load_state_dict()`` on resume; the shared ``cursor`` counts batches the model received.
    """

    def __init__(
        self,
        tensors: tuple[Tensor, ...],
        selection: Selection,
        cursor: EpochCursor,
        *,
        seed: int,
        batch_size: int,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not tensors:
            raise ValueError("the device-resident loader needs a TensorDataset with at least one tensor")
        self.tensors = tensors
        self.device = tensors[0].device
        self.selection, self.cursor, self.seed = selection, cursor, int(seed)
        self.batch_size, self.drop_last = int(batch_size), bool(drop_last)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.start = 0  # batches of this epoch already trained (mid-epoch resume)

    def __len__(self) -> int:
        """Batches this rank serves in the epoch (before a resume skips the trained ones), like the standard
        loader's ``len``; Lightning reads it for progress and ``limit_train_batches``."""
        return batches_per_rank(len(self.selection), self.num_replicas, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[IndexedSample]:
        sel = self.selection
        positions = epoch_shard(len(sel), self.seed, self.cursor.epoch, self.num_replicas, self.rank)
        num_batches = len(self)
        positions = positions[self.start * self.batch_size : num_batches * self.batch_size]
        # the only host-to-device copies of the epoch: its dataset indices and their weights
        index = sel.indices[positions].to(self.device, non_blocking=True)
        weight = sel.weight_at(positions).to(self.device, non_blocking=True)
        for idx, w in zip(index.split(self.batch_size), weight.split(self.batch_size), strict=True):
            yield IndexedSample([t[idx] for t in self.tensors], idx, w)

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
        self.start = min(batches, len(self))


def check_device_resident_options(device_resident: bool | None, num_workers: int | None, collate_fn: Any) -> None:
    """Refuse ``device_resident=True`` with options it cannot honour (workers, a custom collate)."""
    if not device_resident:
        return
    if num_workers:
        raise ValueError(
            f"device_resident=True gathers batches on the device in the main process; num_workers={num_workers} "
            "would have no work to do. Leave num_workers unset (or 0), or use device_resident=False."
        )
    if collate_fn not in (None, default_collate):
        raise ValueError(
            "device_resident=True serves each batch as the TensorDataset's tensors indexed by the batch's "
            "indices (what default_collate builds); a custom collate_fn cannot run there. Drop collate_fn "
            "or use device_resident=False."
        )


def wants_device_resident(device_resident: bool | None, dataset: Dataset, collate_fn: Any) -> bool:
    """Whether the train set is served by :class:`DeviceResidentLoader`.

    ``True``: always (the set must be a ``TensorDataset``); ``False``: never; ``None`` (default):
    when the set is a ``TensorDataset`` whose tensors all live on an accelerator and the collate is default.
    """
    if device_resident is False:
        return False
    if not isinstance(dataset, TensorDataset):
        if device_resident:
            raise TypeError(
                f"device_resident=True needs the training set to be a torch TensorDataset, got "
                f"{type(dataset).__name__}; build one from its tensors or use device_resident=False."
            )
        return False
    if device_resident:
        return True
    on_device = all(t.device.type != "cpu" for t in dataset.tensors)
    return on_device and collate_fn in (None, default_collate)


def device_resident_loader(dm: Any, selection: Selection, num_replicas: int, rank: int) -> DeviceResidentLoader | None:
    """The epoch's :class:`DeviceResidentLoader` when ``dm`` (a ``DynamicPruningDataModule``) serves its train
    set from the device, else ``None``; the tensors are moved to the trainer's device once per run."""
    dataset = dm.train_dataset
    if not wants_device_resident(dm.device_resident, dataset, dm.collate_fn):
        return None
    if dm.device_resident is None and dm.num_workers:
        rank_zero_warn(
            f"the training tensors already live on an accelerator, so batches are gathered there in the main "
            f"process and num_workers={dm.num_workers} is not used; pass device_resident=False to keep the "
            "DataLoader (its workers cannot read accelerator tensors), or leave num_workers unset."
        )
    trainer = dm.trainer
    device = trainer.strategy.root_device if trainer is not None else dataset.tensors[0].device
    source, moved = dm._resident if dm._resident is not None else ((), ())
    if len(source) != len(dataset.tensors) or any(a is not b for a, b in zip(source, dataset.tensors, strict=False)):
        moved = ()
    if not moved or moved[0].device != device:
        moved = tuple(t.to(device) for t in dataset.tensors)
    dm._resident = (tuple(dataset.tensors), moved)
    return DeviceResidentLoader(
        moved,
        selection,
        dm.cursor,
        seed=dm.seed,
        batch_size=dm.batch_size or 1,
        drop_last=dm.drop_last,
        num_replicas=num_replicas,
        rank=rank,
    )
