"""``full``: no pruning, the baseline every table is relative to."""

from __future__ import annotations

import torch

from lightning_ted.core.selection import Selection
from lightning_ted.core.state import ScoreState
from lightning_ted.methods.base import PruningMethod


class FullData(PruningMethod):
    """No pruning: keep every sample with weight 1 whatever the schedule says.

    The baseline every table is relative to. It takes no arguments.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import ScoreState
        >>> sel = FullData().select(ScoreState(5), 0.9, torch.Generator().manual_seed(0))
        >>> len(sel), sel.mean_weight
        (5, 1.0)
    """

    name = "full"

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        return Selection.everything(state.num_samples)

    def expected_kept(self, num_samples: int, prune_ratio: float, epoch: int) -> int:
        return num_samples
