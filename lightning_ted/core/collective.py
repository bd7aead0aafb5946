"""``Collective``: how a run reaches its other ranks, without the Trainer (the datamodule builds it from the
Trainer's strategy). ``None`` in its place means a single process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Collective:
    """How many ranks there are, and an all-gather (one rank's tensor in, every rank's stacked out: one
    collective).

    Examples:
        >>> import torch
        >>> single = Collective(1, lambda t: t.unsqueeze(0))
        >>> single.all_gather(torch.tensor([1.0, 2.0])).shape
        torch.Size([1, 2])
    """

    world: int
    all_gather: Callable[[Tensor], Tensor]
