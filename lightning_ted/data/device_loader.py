"""Device-resident train loader: the epoch's shuffle, shard and batch gather as tensor ops on the device,
for a ``TensorDataset`` that fits in accelerator memory (no per-sample Python, no worker processes).

It serves exactly the batches of the standard path (``KeptDataset`` + ``EpochShuffleSampler``) for the same
``(seed, epoch)``: the same order, the same DDP shards, the same ``IndexedSample(data, index, weight)``;
only where the work happens differs. Per epoch one index tensor is copied to the device; per step a batch
is two slices and one gather per dataset tensor, all asynchronous, so nothing waits on the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset, default_collate

from lightning_ted.core.batch import IndexedSample
from lightning_ted.core.epoch_order import EpochShuffleSampler
from lightning_ted.core.resume import EpochCursor, ResumableEpoch
from lightning_ted.core.selection import Selection
from lightning_ted.data.spec import EpochPlace, TrainData


class DeviceResidentLoader(ResumableEpoch):
    """One epoch's train batches gathered on the device from tensors that already live there.

    The positions come from the same ``EpochShuffleSampler`` as the standard loader's (same order, shards
    and padding), and mid-epoch resume is the standard loader's (``ResumableEpoch``).
    """

    def __init__(
        self,
        tensors: tuple[Tensor, ...],
        selection: Selection,
        cursor: EpochCursor,
        sampler: EpochShuffleSampler,
        *,
        batch_size: int,
        drop_last: bool = False,
    ) -> None:
        if not tensors:
            raise ValueError("the device-resident loader needs a TensorDataset with at least one tensor")
        self.tensors = tensors
        self.device = tensors[0].device
        self.selection, self.cursor, self.sampler = selection, cursor, sampler
        self.batch_size, self.drop_last = int(batch_size), bool(drop_last)
        if cursor.resume_at is not None:
            sampler.start = cursor.resume_at

    def __iter__(self) -> Iterator[IndexedSample]:
        positions = self.sampler.shard()
        positions = positions[: self._batches(positions.numel()) * self.batch_size]
        # the only host-to-device copies of the epoch: its dataset indices and their weights
        index = self.selection.indices[positions].to(self.device, non_blocking=True)
        weight = self.selection.weight_at(positions).to(self.device, non_blocking=True)
        for idx, w in zip(index.split(self.batch_size), weight.split(self.batch_size), strict=True):
            yield IndexedSample([t[idx] for t in self.tensors], idx, w)


def check_device_resident_options(
    device_resident: bool | None, num_workers: int | None, collate_fn: Any, adopted: bool = False
) -> None:
    """Refuse ``device_resident=True`` with options it cannot honour (workers, a custom collate), given to the
    datamodule or ``adopted`` from a wrapped DataModule's train loader."""
    if not device_resident:
        return
    source = "the wrapped DataModule's train loader has" if adopted else "got"
    if num_workers:
        raise ValueError(
            f"device_resident=True gathers batches on the device in the main process, but {source} "
            f"num_workers={num_workers}, which would have no work to do. Pass num_workers=0 to "
            "DynamicPruningDataModule, or use device_resident=False."
        )
    if collate_fn not in (None, default_collate):
        raise ValueError(
            f"device_resident=True serves each batch as the TensorDataset's tensors indexed by the batch's "
            f"indices (what default_collate builds), but {source} a custom collate_fn, which cannot run there. "
            "Drop the collate_fn or use device_resident=False."
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


def device_resident_loader(
    data: TrainData, place: EpochPlace, selection: Selection, cursor: EpochCursor, sampler: EpochShuffleSampler
) -> DeviceResidentLoader | None:
    """The epoch's :class:`DeviceResidentLoader` when ``data`` is served from the device, else ``None``; the
    tensors are moved to ``place.device`` once per run (kept in ``data.resident``)."""
    dataset = data.dataset
    if not wants_device_resident(data.device_resident, dataset, data.collate_fn):
        return None
    if data.device_resident is None and data.num_workers:
        rank_zero_warn(
            f"the training tensors already live on an accelerator, so batches are gathered there in the main "
            f"process and num_workers={data.num_workers} is not used; pass device_resident=False to keep the "
            "DataLoader (its workers cannot read accelerator tensors), or leave num_workers unset."
        )
    device = place.device if place.device is not None else dataset.tensors[0].device
    source, moved = data.resident if data.resident is not None else ((), ())
    if len(source) != len(dataset.tensors) or any(a is not b for a, b in zip(source, dataset.tensors, strict=False)):
        moved = ()
    if not moved or moved[0].device != device:
        moved = tuple(t.to(device) for t in dataset.tensors)
    data.resident = (tuple(dataset.tensors), moved)
    return DeviceResidentLoader(
        moved, selection, cursor, sampler, batch_size=data.batch_size or 1, drop_last=bool(data.drop_last)
    )
