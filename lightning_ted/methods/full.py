"""``full``: no pruning, the baseline every table is relative to."""

from __future__ import annotations

import torch

from lightning_ted.core.selection import Selection
from lightning_ted.core.state import ScoreState
from lightning_ted.methods.base import PruningMethod


class FullData(PruningMethod):
    """Keep every sample with weight 1 whatever the schedule says."""

    name = "full"

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        return Selection.everything(state.num_samples)

    def expected_kept(self, num_samples: int, prune_ratio: float, epoch: int) -> int:
        return num_samples
