"""The worker side of a streamed epoch: the source's items with the epoch's pruned samples dropped.

Each worker iterates its own share of the source (the dataset's split) and drops, before collation, every
sample the epoch's :class:`~lightning_ted.core.selection.Selection` does not keep; kept ones are collated into
``IndexedSample(batch, index, weight)``. The per-sample test is one lookup in a dense weight array (0 =
pruned), so reading stays as full as without pruning; the model never computes on a pruned sample.

The worker collates full batches itself; its last kept samples, fewer than a batch, go to the main
process uncollated (:class:`Remainder`), which batches the workers' remainders together. So an epoch takes
``ceil(kept / batch_size)`` batches on one process whatever the number of workers: the map-style count.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from lightning_ted.core.batch import IndexedSample
from lightning_ted.core.selection import Selection


def dense_weights(selection: Selection) -> np.ndarray:
    """Every sample's weight in the epoch, 0 for a pruned one (float32, 4 bytes per sample)."""
    weights = np.zeros(selection.num_samples, dtype=np.float32)
    weights[selection.indices.numpy()] = selection.weights.numpy()
    return weights


class Remainder:
    """A worker's last kept samples (fewer than a batch), uncollated, for the main process to batch."""

    def __init__(self, items: list, index: list[int], weight: list[float]) -> None:
        self.items, self.index, self.weight = items, index, weight


def unbatched(item: Any) -> Any:
    """The loader's ``collate_fn`` with automatic batching off: the stream yields batches already."""
    return item


def collate_kept(collate: Callable, items: list, index: list[int], weight: list[float]) -> IndexedSample:
    """One batch: the items through the user's collate, their indices and weights as tensors."""
    return IndexedSample(collate(items), torch.tensor(index, dtype=torch.int64), torch.tensor(weight))


class PrunedStream(IterableDataset):
    """One epoch's kept samples of ``epoch_stream`` (an object with ``items()`` yielding ``(index, item)``),
    collated by ``collate`` (the user's, or ``default_collate``) in batches of ``batch_size`` as
    ``IndexedSample(batch, index, weight)``, the last few as a :class:`Remainder`.

    ``weights`` is :func:`dense_weights` of the epoch's selection; an index outside ``[0, len(weights))``
    is refused (an id column that does not hold the sample's position).
    """

    def __init__(self, epoch_stream: Any, weights: np.ndarray, batch_size: int, collate: Callable) -> None:
        self.epoch_stream, self.weights = epoch_stream, weights
        self.batch_size, self.collate = batch_size, collate

    def __iter__(self) -> Iterator[Any]:
        lookup = array("f", self.weights.tobytes())  # a Python float per lookup, 4 bytes per sample
        n, size, collate = len(lookup), self.batch_size, self.collate
        items: list = []
        index: list[int] = []
        weight: list[float] = []
        for i, item in self.epoch_stream.items():
            if not 0 <= i < n:
                raise IndexError(
                    f"the stream yielded sample id {i}, outside [0, {n}): every id must be the sample's stable "
                    "position in the dataset (0 .. len - 1) so it has a score."
                )
            w = lookup[i]
            if w > 0.0:
                items.append(item)
                index.append(i)
                weight.append(w)
                if len(items) == size:
                    yield collate_kept(collate, items, index, weight)
                    items, index, weight = [], [], []
        if items:
            yield Remainder(items, index, weight)
