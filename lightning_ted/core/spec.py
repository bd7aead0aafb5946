"""The training data with its loader options (``TrainData``), typed. The datamodule fills it in; the loaders
read it, the run plan counts an epoch's batches from it and a method sees it at each epoch's start, so it lives
in the core, below all three.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainData:
    """The training set and its ``DataLoader`` options (``None``: PyTorch's default), as the datamodule settled
    them at set-up (its own arguments first, then the wrapped loader's).

    Args:
        dataset: the map-style training set (for a stream, the object its source reads).
        stream_source: the streamed set's source (``streaming/sources.py``), ``None`` on the map-style path.
        seed: seeds the epoch's order and the workers through ``(seed, epoch)``.
        loader_options: options adopted from a wrapped loader (``shuffle`` among them).
        device_resident: serve batches from tensors on the device (``data/device_loader.py``).
        overfitting: ``Trainer(overfit_batches=...)``: every sample, in index order, unpruned.
        resident: the device copies of the tensors, reused from epoch to epoch (the loader refreshes it).

    Examples:
        >>> data = TrainData(list(range(10)), batch_size=4)
        >>> data.batch_size, data.shuffle
        (4, True)
    """

    dataset: Any
    stream_source: Any = None
    seed: int = 0
    batch_size: int | None = None
    num_workers: int | None = None
    collate_fn: Callable | None = None
    pin_memory: bool | None = None
    drop_last: bool | None = None
    persistent_workers: bool | None = None
    prefetch_factor: int | None = None
    loader_options: dict[str, Any] = field(default_factory=lambda: {"shuffle": True})
    device_resident: bool | None = None
    overfitting: bool = False
    resident: tuple | None = None

    @property
    def shuffle(self) -> bool:
        """Whether the epoch's kept samples are shuffled (not while overfitting, nor when the loader was not)."""
        return bool(self.loader_options.get("shuffle", True)) and not self.overfitting
