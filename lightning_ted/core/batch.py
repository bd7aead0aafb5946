"""What a training batch of the pruning loaders carries: the user's data with each sample's dataset index and
loss weight (``IndexedSample``), the collate that builds it, and the per-step context the datamodule keeps
once the batch is unwrapped (``BatchContext``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import default_collate


class IndexedSample(NamedTuple):
    """A training item (or collated batch) with its dataset index and loss weight.

    The pruning loaders yield it in place of the user's batch; the datamodule unwraps it before any user hook
    sees the batch and keeps the index and weight for the step (``BatchContext``), so ``training_step`` gets the
    user's own ``data``.

    Args:
        data: the user's item, or the collated batch.
        index: the sample's dataset index (an int64 tensor in a batch).
        weight: the sample's loss weight (a float32 tensor in a batch).

    Examples:
        >>> import torch
        >>> from lightning_ted.core.batch import IndexedCollate
        >>> items = [IndexedSample(torch.tensor([1.0, 2.0]), 3, 1.0), IndexedSample(torch.tensor([5.0, 6.0]), 7, 2.0)]
        >>> batch = IndexedCollate()(items)  # the user's collate_fn (default_collate here) on the data part
        >>> batch.data.shape, batch.index.tolist(), batch.weight.tolist()
        (torch.Size([2, 2]), [3, 7], [1.0, 2.0])
    """

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
