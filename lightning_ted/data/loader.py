"""The per-epoch train loader: the kept samples with their indices and weights, shuffled from
``(seed, epoch)``, sharded across ranks and resumable mid-epoch.

``DynamicPruningDataModule`` builds one ``PruningDataLoader`` per epoch from these pieces and a typed
:class:`~lightning_ted.core.spec.TrainData`; each batch is
an ``IndexedSample(data, index, weight)`` that the datamodule unwraps before the model sees it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler, TensorDataset, default_collate

from lightning_ted.core.batch import Collated, IndexedCollate, IndexedSample
from lightning_ted.core.batch_counts import batches_per_rank, limited_batches, trained_samples
from lightning_ted.core.epoch_order import EpochShuffleSampler
from lightning_ted.core.resume import EpochCursor, ResumableEpoch
from lightning_ted.core.selection import Selection, epoch_generator
from lightning_ted.data.device_loader import DeviceResidentLoader, device_resident_loader
from lightning_ted.data.spec import EpochPlace, TrainData

# the batch counts are the core's (core/batch_counts.py); this module keeps their import path
__all__ = [
    "KeptDataset",
    "PruningDataLoader",
    "batches_per_rank",
    "epoch_loader",
    "limited_batches",
    "loader_kwargs",
    "trained_part",
    "trained_samples",
]


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
        weight = float(self.selection.weight_at(torch.tensor([pos]))[0])
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


class PruningDataLoader(ResumableEpoch, DataLoader):
    """The train loader of one epoch over the kept samples, resumable mid-epoch (see ``ResumableEpoch``)."""

    def __init__(self, *args: Any, cursor: EpochCursor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor = cursor
        if cursor.resume_at is not None and hasattr(self.sampler, "start"):
            self.sampler.start = cursor.resume_at


def epoch_loader(
    data: TrainData, place: EpochPlace, selection: Selection, cursor: EpochCursor
) -> tuple[PruningDataLoader | DeviceResidentLoader, Selection, EpochCursor]:
    """The train loader of ``cursor.epoch`` over ``selection``, the part of the selection it will actually load
    under the Trainer's ``limit_train_batches``, and the cursor it advances.

    While overfitting (``Trainer(overfit_batches=...)``) the samples come in index order, through a
    ``SequentialSampler`` on one process so Lightning keeps it as it is.
    """
    if len(data.dataset) != selection.num_samples:
        raise RuntimeError(
            f"the training set changed length from {selection.num_samples} to {len(data.dataset)} samples; "
            "per-sample scores are indexed by position, so the dataset must keep a fixed length for the whole run."
        )
    world, rank = place.world, place.rank
    sampler = EpochShuffleSampler(len(selection), data.seed, cursor.epoch, world, rank, shuffle=data.shuffle)
    loader = device_resident_loader(data, place, selection, cursor, sampler)
    if loader is None:
        kept = KeptDataset(data.dataset, selection, gather_tensors=data.collate_fn in (None, default_collate))
        loader = PruningDataLoader(
            kept,
            cursor=cursor,
            sampler=SequentialSampler(kept) if data.overfitting and world == 1 else sampler,
            generator=epoch_generator(data.seed, cursor.epoch, stream=2),  # worker seeds
            collate_fn=IndexedCollate(data.collate_fn),
            drop_last=bool(data.drop_last),
            **loader_kwargs(data),
        )
    batches = limited_batches(len(loader), place.limit_train_batches)
    if batches >= len(loader):
        return loader, selection, cursor
    count = trained_samples(len(selection), batches, world, data.batch_size or 1)
    return loader, trained_part(selection, sampler, count), cursor


def trained_part(selection: Selection, sampler: EpochShuffleSampler, count: int) -> Selection:
    """The samples of ``selection`` at the first ``count`` positions of the sampler's epoch order (what an
    epoch cut short by ``limit_train_batches`` trains), keeping the selection's layout and weights."""
    if count >= len(selection):
        return selection
    loaded = torch.zeros(len(selection), dtype=torch.bool)
    loaded[sampler.order()[:count]] = True
    unit = int(torch.count_nonzero(loaded[: selection.num_unit_weight]))
    per_sample = None if selection.per_sample is None else selection.per_sample[loaded]
    return Selection(
        selection.indices[loaded], unit, selection.weight, selection.num_samples, selection.target_ratio, per_sample
    )


def loader_kwargs(data: TrainData) -> dict[str, Any]:
    """``DataLoader`` options of the train loader (worker-only ones with workers)."""
    workers = data.num_workers or 0
    kwargs = {"batch_size": data.batch_size or 1, "num_workers": workers, "pin_memory": bool(data.pin_memory)}
    kwargs.update({k: v for k, v in data.loader_options.items() if k != "shuffle" and v is not None})
    kwargs["persistent_workers"] = bool(data.persistent_workers)  # PyTorch refuses True without workers
    if workers == 0:  # an option of worker processes only, e.g. adopted from a loader that had workers
        kwargs.pop("multiprocessing_context", None)
    elif data.prefetch_factor is not None:
        kwargs["prefetch_factor"] = data.prefetch_factor
    return kwargs
