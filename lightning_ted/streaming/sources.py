"""Where a streamed epoch's samples come from, each with its stable global index.

A source turns an iterable training set into ``(index, item)`` pairs in the dataset's own order, split
across ranks and workers by the dataset itself:

- :class:`LitdataSource`: a litdata ``StreamingDataset``. The index is the global sample index litdata
  reads the item at (its chunk-aware shuffle, its split across ranks and workers are kept as they are),
  and the split is known before the epoch, so every rank and worker's kept count is planned exactly.
- :class:`IdColumnSource`: any other ``IterableDataset`` with ``__len__`` whose items carry a stable id
  in ``[0, len)`` under a key or position the user names (``id_column``).

:func:`train_source` decides, for a training set, between the map-style path and a streamed source, and
refuses an iterable dataset it cannot address by index.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Dataset, IterableDataset

try:  # litdata is the optional ``scale`` extra
    from litdata import StreamingDataset
    from litdata.streaming.sampler import ChunkedIndex
    from litdata.utilities.env import _DistributedEnv
except ImportError:  # pragma: no cover - exercised only without the extra
    StreamingDataset = ChunkedIndex = _DistributedEnv = None


def is_streaming_dataset(dataset: Any) -> bool:
    return StreamingDataset is not None and isinstance(dataset, StreamingDataset)


class StreamingMapView(Dataset):
    """A ``StreamingDataset`` read by index (``stream=False``): the map-style path, for a local, cached copy.

    Its length is the dataset's global sample count on every rank (``len(StreamingDataset)`` is the share of
    one rank under DDP), so per-sample scores line up with the streamed path's indices.

    Args:
        dataset: the litdata ``StreamingDataset``.

    Raises:
        ValueError: the dataset's sample indices do not run from 0 without gaps.

    Examples:
        >>> from types import SimpleNamespace
        >>> class Chunks:  # a stand-in: what the view reads of a StreamingDataset (litdata's chunk Intervals)
        ...     def get_len(self, num_workers, batch_size):
        ...         intervals = [(0, 0, 4, 4), (4, 4, 6, 6)]  # (chunk_start, roi_start, roi_end, chunk_end)
        ...         self.shuffler = SimpleNamespace(cache=SimpleNamespace(get_chunk_intervals=lambda: intervals))
        ...     def __getitem__(self, index):
        ...         return {"id": index}
        >>> view = StreamingMapView(Chunks())
        >>> len(view), view[5]
        (6, {'id': 5})
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.num_samples = litdata_sample_count(dataset)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(index)]


def litdata_sample_count(dataset: Any) -> int:
    """Global number of samples of a ``StreamingDataset``; its indices must tile ``[0, N)`` (no gaps)."""
    probe = copy.copy(dataset)
    probe.get_len(1, 1)  # reads the index and creates the shuffler, on the copy only
    intervals = probe.shuffler.cache.get_chunk_intervals()
    sizes = sum(int(iv[2]) - int(iv[1]) for iv in intervals)
    top = max((int(iv[2]) for iv in intervals), default=0)
    bottom = min((int(iv[1]) for iv in intervals), default=0)
    if sizes != top or bottom != 0:
        raise ValueError(
            f"{type(dataset).__name__} serves {sizes} samples whose indices span [{bottom}, {top}): pruning scores "
            "samples by their global index, which must run from 0 without gaps. Optimize the samples you train "
            "on into their own folder."
        )
    return sizes


class _Tagged:
    """``__getitem__`` of a litdata dataset copy that returns ``(global index, item)`` for the reads its
    iterator makes (``ChunkedIndex``) and the plain item for other lookups. The iterator calls
    ``self.__getitem__``, so an instance attribute on a private copy sees every read, including those of a
    user's subclass override."""

    def __init__(self, dataset: Any) -> None:
        self.read = type(dataset).__getitem__.__get__(dataset)

    def __call__(self, index: Any) -> Any:
        item = self.read(index)
        if isinstance(index, ChunkedIndex):
            return int(index.index), item
        return item


class LitdataSource:
    """A litdata ``StreamingDataset`` streamed in litdata's own order with each item's global index.

    litdata's shuffle and split across ranks and workers are kept; the split is known before the epoch
    (``plans_split``), so :meth:`for_epoch` plans every rank and worker's kept count exactly.

    Args:
        dataset: the litdata ``StreamingDataset``.

    Raises:
        ValueError: the dataset's sample indices do not run from 0 without gaps (pruning scores samples by
            their global index).

    Examples:
        >>> from types import SimpleNamespace
        >>> class Chunks:  # a stand-in: what the source reads of a StreamingDataset (litdata's chunk Intervals)
        ...     def __init__(self, *intervals):  # (chunk_start, roi_start, roi_end, chunk_end)
        ...         self.intervals = list(intervals)
        ...     def get_len(self, num_workers, batch_size):
        ...         self.shuffler = SimpleNamespace(cache=SimpleNamespace(get_chunk_intervals=lambda: self.intervals))
        >>> LitdataSource(Chunks((0, 0, 4, 4), (4, 4, 6, 6))).num_samples
        6
        >>> LitdataSource(Chunks((0, 0, 4, 4), (6, 6, 8, 8)))  # samples 4 and 5 are missing
        Traceback (most recent call last):
        ValueError: Chunks serves 6 samples whose indices span [0, 8): ...
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.num_samples = litdata_sample_count(dataset)
        self.plans_split = True  # the rank and worker split is known before the epoch

    def for_epoch(self, epoch: int, world: int, rank: int, nodes: int, workers: int, batch_size: int) -> LitdataEpoch:
        return LitdataEpoch(self.dataset, epoch, world, rank, nodes, workers, batch_size)


class LitdataEpoch:
    """One epoch of a ``StreamingDataset``: a private copy set to the epoch, the Trainer's ranks, the loader's
    workers and batch size, with ``drop_last`` off (every kept sample is served; ranks are evened out by the
    loader, not by dropping samples)."""

    def __init__(
        self, dataset: Any, epoch: int, world: int, rank: int, nodes: int, workers: int, batch_size: int
    ) -> None:
        ds = copy.copy(dataset)
        ds.distributed_env = _DistributedEnv(world, rank, max(1, nodes))
        ds.set_drop_last(False)
        ds.set_epoch(epoch + 1)  # litdata counts epochs from 1; its shuffle is seeded by (seed, epoch)
        ds.get_len(workers, batch_size)  # sets workers and batch size, builds the shuffler for the plan
        self.dataset, self.world, self.workers, self.batch_size = ds, world, max(1, workers), batch_size
        self.litdata_epoch = epoch + 1

    def kept_per_worker(self, keep: np.ndarray) -> np.ndarray:
        """Kept samples each (rank, worker) will stream this epoch, shape ``(world, workers)``, from litdata's
        own assignment of chunk intervals to workers (one count per chunk interval, no per-sample work)."""
        env = _DistributedEnv(self.world, 0, self.dataset.distributed_env.num_nodes)
        _, intervals = self.dataset.shuffler.get_chunks_and_intervals_per_workers(
            env, self.workers, self.batch_size, self.litdata_epoch
        )
        counts = [sum(int(np.count_nonzero(keep[int(iv[1]) : int(iv[2])])) for iv in worker) for worker in intervals]
        return np.asarray(counts, dtype=np.int64).reshape(self.world, self.workers)

    def items(self) -> Iterator[tuple[int, Any]]:
        """``(global index, item)`` of this worker's share, in litdata's order (runs in the worker); litdata's
        own iterator, no generator layer added."""
        ds = self.dataset
        if not isinstance(ds.__dict__.get("__getitem__"), _Tagged):
            ds.__getitem__ = _Tagged(ds)
        return iter(ds)


class IdColumnSource:
    """An ``IterableDataset`` whose items carry their sample id under ``column`` (a key or a position).

    The dataset splits itself across workers, so the split is not known ahead (``plans_split`` is False) and
    :meth:`for_epoch` refuses DDP (``world > 1``: ranks could run different numbers of batches); it calls the
    dataset's ``set_epoch(epoch)`` where there is one. ``items`` raises ``KeyError`` for an item without an id.

    Args:
        dataset: an ``IterableDataset`` with ``__len__``, its items' ids in ``[0, len(dataset))``.
        column: the key (or position) of each item's stable sample id (the datamodule's ``id_column``).

    Raises:
        TypeError: ``dataset`` has no ``__len__``.

    Examples:
        >>> from torch.utils.data import IterableDataset
        >>> class Rows(IterableDataset):
        ...     def __len__(self):
        ...         return 3
        ...     def __iter__(self):
        ...         return iter([{"id": 2, "x": 0.5}, {"id": 0, "x": 1.5}, {"id": 1, "x": 2.5}])
        >>> epoch = IdColumnSource(Rows(), column="id").for_epoch(0, world=1, rank=0, nodes=1, workers=0, batch_size=2)
        >>> [index for index, item in epoch.items()]
        [2, 0, 1]
    """

    def __init__(self, dataset: IterableDataset, column: str | int) -> None:
        self.dataset, self.column = dataset, column
        self.num_samples = len(dataset)
        self.plans_split = False  # the dataset splits itself across workers; the split is not known ahead

    def for_epoch(self, epoch: int, world: int, rank: int, nodes: int, workers: int, batch_size: int) -> Any:
        if world > 1:
            raise ValueError(
                f"{type(self.dataset).__name__} streams its own split across processes, which lightning-ted cannot "
                "plan, so ranks could run different numbers of batches and hang; under DDP use litdata's "
                "StreamingDataset (its split is planned) or a map-style dataset."
            )
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        return self

    def items(self) -> Iterator[tuple[int, Any]]:
        column = self.column
        for item in self.dataset:
            try:
                index = item[column]
            except (KeyError, IndexError, TypeError) as err:
                raise KeyError(
                    f"an item of {type(self.dataset).__name__} has no id under id_column={column!r}; name the key "
                    "(or position) that holds each sample's stable id in [0, len(dataset))."
                ) from err
            yield int(index), item


def train_source(dataset: Any, stream: bool | None, id_column: str | int | None) -> tuple[Any, Any]:
    """``(training set for the datamodule, streamed source or None)`` for ``dataset``.

    A ``StreamingDataset`` streams by default (``stream=False``: read by index through
    :class:`StreamingMapView`); another ``IterableDataset`` streams when it has a length and ``id_column``
    names its ids; a map-style dataset takes the map-style path. Anything else is refused with what to do.
    """
    from lightning_ted.adapters.wrapping import check_map_style  # map-style checks stay where they are

    name = type(dataset).__name__
    if is_streaming_dataset(dataset):
        if stream is False:
            return StreamingMapView(dataset), None
        return dataset, LitdataSource(dataset)
    if isinstance(dataset, IterableDataset):
        if stream is False:
            raise ValueError(
                f"stream=False reads samples by index, but {name} is an IterableDataset; drop stream=False."
            )
        if id_column is None:
            raise TypeError(
                f"{name} is an IterableDataset without a sample id: dynamic pruning scores samples by a stable "
                "index. Write it with litdata (litdata.optimize + litdata.StreamingDataset, streamed with its global "
                "indices; pip install 'lightning-ted[scale]'), pass id_column='<key>' naming the field that holds "
                "each sample's id in [0, len(dataset)), or use a map-style Dataset."
            )
        if not _has_len(dataset):
            raise TypeError(
                f"{name} has no __len__: with id_column={id_column!r} the ids must lie in [0, len(dataset)) so every "
                "sample gets a score slot. Give the dataset a __len__ (its sample count), or use litdata's "
                "StreamingDataset."
            )
        return dataset, IdColumnSource(dataset, id_column)
    if stream:
        raise ValueError(
            f"stream=True needs an IterableDataset (e.g. litdata's StreamingDataset); {name} is map-style."
        )
    if id_column is not None:
        raise ValueError(
            f"id_column={id_column!r} names the ids of an IterableDataset's items; {name} is map-style, so its samples "
            "are already addressed by position. Drop id_column."
        )
    check_map_style(dataset)
    return dataset, None


def _has_len(dataset: Any) -> bool:
    try:
        return math.isfinite(len(dataset))
    except (TypeError, NotImplementedError):
        return False
