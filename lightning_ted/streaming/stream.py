"""The worker side of a streamed epoch: the source's items with the epoch's pruned samples dropped.

Each worker iterates its own share of the source (the dataset's split) and drops, before collation, every
sample the epoch's :class:`~lightning_ted.selection.Selection` does not keep; a kept one becomes
``IndexedSample(item, index, weight)``. The per-sample test is one lookup in a dense weight array (0 =
pruned), so reading stays as full as without pruning; the model never computes on a pruned sample.

The worker collates full batches itself; its last kept samples, fewer than a batch, go to the main
process uncollated (:class:`Remainder`), which batches the workers' remainders together. So an epoch takes
``ceil(kept / batch_size)`` batches on one process whatever the number of workers: the map-style count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from lightning_ted.batch import IndexedSample
from lightning_ted.selection import Selection


def dense_weights(selection: Selection) -> np.ndarray:
    """Every sample's weight in the epoch, 0 for a pruned one (float32, 4 bytes per sample)."""
    weights = np.zeros(selection.num_samples, dtype=np.float32)
    weights[selection.indices.numpy()] = selection.weights.numpy()
    return weights


class Remainder:
    """A worker's last kept samples (fewer than a batch), uncollated, for the main process to batch."""

    def __init__(self, items: list[IndexedSample]) -> None:
        self.items = items


def unbatched(item: Any) -> Any:
    """The loader's ``collate_fn`` with automatic batching off: the stream yields batches already."""
    return item


class PrunedStream(IterableDataset):
    """One epoch's kept samples of ``epoch_stream`` (an object with ``items()`` yielding ``(index, item)``),
    collated by ``collate`` in batches of ``batch_size``, the last few as a :class:`Remainder`.

    ``weights`` is :func:`dense_weights` of the epoch's selection; an index outside ``[0, len(weights))``
    is refused (an id column that does not hold the sample's position).
    """

    def __init__(self, epoch_stream: Any, weights: np.ndarray, batch_size: int, collate: Callable) -> None:
        self.epoch_stream, self.weights = epoch_stream, weights
        self.batch_size, self.collate = batch_size, collate

    def __iter__(self) -> Iterator[Any]:
        weights, n, size, collate = self.weights, self.weights.shape[0], self.batch_size, self.collate
        batch: list[IndexedSample] = []
        for index, item in self.epoch_stream.items():
            if not 0 <= index < n:
                raise IndexError(
                    f"the stream yielded sample id {index}, outside [0, {n}): every id must be the sample's stable "
                    "position in the dataset (0 .. len - 1) so it has a score."
                )
            weight = weights[index]
            if weight > 0.0:
                batch.append(IndexedSample(item, index, float(weight)))
                if len(batch) == size:
                    yield collate(batch)
                    batch = []
        if batch:
            yield Remainder(batch)
