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
from torch.utils.data import DataLoader, Dataset, SequentialSampler, TensorDataset, default_collate
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


@dataclass
class EpochCursor:
    """How far training got through one epoch's loader: the state a mid-epoch checkpoint must carry."""

    epoch: int
    batches: int = 0  # training batches transferred to the model so far in this epoch (this rank)
    position: int = 0  # positions of the epoch's order trained so far, all ranks together
    resume_at: int | None = None  # position a restored checkpoint stopped at (see PruningDataLoader)
    resume_batches: int = 0  # batches the interrupted run had trained when it stopped there

    def advance(self, batch_size: int, world: int) -> None:
        """Count one training batch of ``batch_size`` samples on each of ``world`` ranks."""
        self.batches += 1
        self.position += batch_size * world


class ResumableEpoch:
    """Mid-epoch resume shared by the train loaders (``PruningDataLoader``, ``DeviceResidentLoader``).

    Lightning saves ``state_dict()`` of a train loader that has one in every checkpoint and hands it to
    ``load_state_dict()`` on resume. The cursor counts what the model received (not what the fetcher
    prefetched). The position in samples comes from the datamodule's checkpoint (``cursor.resume_at``),
    so a resumed run continues with the first sample the interrupted run did not train on, whatever its
    batch size: nothing is repeated or skipped. Without it (an older checkpoint) batches times batch size
    is used. Needs ``cursor``, ``sampler``, ``batch_size`` and ``drop_last`` attributes.
    """

    cursor: EpochCursor
    sampler: Any
    batch_size: int | None
    drop_last: bool

    def _batches(self, samples: int) -> int:
        size = self.batch_size or 1
        return samples // size if self.drop_last else math.ceil(samples / size)

    def __len__(self) -> int:
        """Batches of the epoch as Lightning counts them: after a resume, the interrupted run's trained
        batches plus this run's remaining ones (their size may differ), so Lightning ends the epoch
        neither early nor late."""
        if self.cursor.resume_at is None or not hasattr(self.sampler, "remaining"):
            return self._batches(len(self.sampler))
        return self.cursor.resume_batches + self._batches(self.sampler.remaining())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "batches": self.cursor.batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches"])
        if epoch != self.cursor.epoch:
            raise RuntimeError(
                f"the checkpoint's train loader stopped in epoch {epoch} but Lightning resumes epoch "
                f"{self.cursor.epoch}; the checkpoint does not match its training progress."
            )
        world = getattr(self.sampler, "num_replicas", 1)
        position = self.cursor.resume_at
        if position is None:
            position = batches * (self.batch_size or 1) * world
        self.cursor.batches, self.cursor.position = batches, position
        if hasattr(self.sampler, "start"):
            self.sampler.start = position


class PruningDataLoader(ResumableEpoch, DataLoader):
    """The train loader of one epoch over the kept samples, resumable mid-epoch (see ``ResumableEpoch``)."""

    def __init__(self, *args: Any, cursor: EpochCursor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor = cursor
        if cursor.resume_at is not None and hasattr(self.sampler, "start"):
            self.sampler.start = cursor.resume_at


def epoch_loader(
    dm: Any, selection: Selection, cursor: EpochCursor, world: int, rank: int
) -> tuple[PruningDataLoader, Selection]:
    """The train loader of ``cursor.epoch`` over ``selection`` for datamodule ``dm``, and the part of the
    selection it will actually load under the Trainer's ``limit_train_batches``.

    While overfitting (``Trainer(overfit_batches=...)``) the samples come in index order, through a
    ``SequentialSampler`` on one process so Lightning keeps it as it is.
    """
    if getattr(dm, "stream_source", None) is not None:  # an iterable training set: lightning_ted/streaming/
        from lightning_ted.streaming.epoch import streamed_epoch_loader

        return streamed_epoch_loader(dm, selection, cursor, world, rank)
    if len(dm.train_dataset) != selection.num_samples:
        raise RuntimeError(
            f"the training set changed length from {selection.num_samples} to {len(dm.train_dataset)} samples; "
            "per-sample scores are indexed by position, so the dataset must keep a fixed length for the whole run."
        )
    from lightning_ted.device_loader import device_resident_loader  # it builds on this module's classes

    shuffle = dm.loader_options["shuffle"] and not dm.overfitting
    sampler = EpochShuffleSampler(len(selection), dm.seed, cursor.epoch, world, rank, shuffle=shuffle)
    loader = device_resident_loader(dm, selection, cursor, sampler)
    if loader is None:
        kept = KeptDataset(dm.train_dataset, selection, gather_tensors=dm.collate_fn in (None, default_collate))
        loader = PruningDataLoader(
            kept,
            cursor=cursor,
            sampler=SequentialSampler(kept) if dm.overfitting and world == 1 else sampler,
            generator=epoch_generator(dm.seed, cursor.epoch, stream=2),  # worker seeds
            collate_fn=IndexedCollate(dm.collate_fn),
            drop_last=bool(dm.drop_last),
            **loader_kwargs(dm),
        )
    limit = dm.trainer.limit_train_batches if dm.trainer is not None else 1.0
    batches = limited_batches(len(loader), limit)
    if batches >= len(loader):
        return loader, selection
    count = trained_samples(len(selection), batches, world, dm.batch_size or 1)
    return loader, trained_part(selection, sampler, count)


def limited_batches(batches: int, limit: int | float) -> int:
    """Batches Lightning runs of a loader of ``batches`` under ``limit_train_batches`` (its own rule)."""
    return min(batches, limit) if isinstance(limit, int) else int(batches * limit)


def trained_samples(kept: int, batches: int, world: int, batch_size: int) -> int:
    """Distinct kept samples loaded when each of ``world`` ranks runs ``batches`` batches of its shard."""
    per_rank = min(math.ceil(kept / world), batches * batch_size)
    return min(kept, world * per_rank)


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


def interrupted_epoch(selection: Selection, cursor: EpochCursor) -> dict[str, Any]:
    """What a mid-epoch checkpoint stores to finish the epoch exactly as begun: its selection (int32 indices
    below 2^31 samples: 4 bytes per kept sample) and the position reached in its order, in samples."""
    small = selection.num_samples <= torch.iinfo(torch.int32).max
    return {
        "epoch": cursor.epoch,
        "position": min(cursor.position, len(selection)),
        "batches": cursor.batches,
        "indices": selection.indices.to(torch.int32 if small else torch.int64),
        "num_unit_weight": selection.num_unit_weight,
        "weight": float(selection.weight),
        "target_ratio": float(selection.target_ratio),
        "per_sample": selection.per_sample,  # Horvitz-Thompson weights of a per-sample selection, else None
    }


def restore_interrupted(saved: dict[str, Any], num_samples: int) -> tuple[EpochCursor, Selection]:
    """The cursor to resume from and the selection, from :func:`interrupted_epoch`'s record."""
    selection = Selection(
        saved["indices"].to(torch.int64),
        int(saved["num_unit_weight"]),
        float(saved["weight"]),
        num_samples,
        float(saved["target_ratio"]),
        saved.get("per_sample"),
    )
    epoch, position = int(saved["epoch"]), int(saved["position"])
    cursor = EpochCursor(
        epoch, int(saved["batches"]), position, resume_at=position, resume_batches=int(saved["batches"])
    )
    return cursor, selection


def loader_kwargs(dm: Any) -> dict[str, Any]:
    """``DataLoader`` options of ``dm``'s train and evaluation loaders (worker-only ones with workers)."""
    workers = dm.num_workers or 0
    kwargs = {"batch_size": dm.batch_size or 1, "num_workers": workers, "pin_memory": bool(dm.pin_memory)}
    kwargs.update({k: v for k, v in dm.loader_options.items() if k != "shuffle" and v is not None})
    kwargs["persistent_workers"] = bool(dm.persistent_workers)  # PyTorch refuses True without workers
    if workers == 0:  # an option of worker processes only, e.g. adopted from a loader that had workers
        kwargs.pop("multiprocessing_context", None)
    elif dm.prefetch_factor is not None:
        kwargs["prefetch_factor"] = dm.prefetch_factor
    return kwargs
