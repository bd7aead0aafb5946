"""What the train loaders are built from, typed: the training data with its loader options (``TrainData``, defined
in :mod:`lightning_ted.core.spec` because the run plan and the methods read it too) and where the epoch is loaded
(``EpochPlace``). The datamodule fills them in; the loaders (map-style, device-resident, streamed) read nothing
else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_ted.core.spec import TrainData

__all__ = ["EpochPlace", "TrainData"]


@dataclass(frozen=True)
class EpochPlace:
    """Where an epoch is loaded: the processes, this one's rank, the nodes, the device, and the Trainer's cuts.

    Examples:
        >>> EpochPlace().world, EpochPlace(world=2, rank=1).rank
        (1, 1)
    """

    world: int = 1
    rank: int = 0
    nodes: int = 1
    device: torch.device | None = None
    limit_train_batches: int | float = 1.0
    overfit_batches: int | float = 0
