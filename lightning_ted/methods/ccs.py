"""``ccs``: coverage-centric stratified selection over a static difficulty score."""

from __future__ import annotations

import math

import torch

from lightning_ted.core.selection import Selection, epoch_generator
from lightning_ted.core.state import ScoreState
from lightning_ted.methods.static import EL2N

_STRATA_STREAM = 6


class CCS(EL2N):
    """CCS (Zheng, Liu, Chen and Prakash, ICLR 2023, "Coverage-centric Coreset Selection for High Pruning Rates").

    Rule: on the static EL2N score, first remove the hardest ``hard_cutoff`` share (likely mislabelled),
    then split the remaining score range into ``strata`` equal-width bins and fill the budget evenly
    across bins, smallest bins first, sampling uniformly inside each (weight 1), so easy, medium and
    hard regions all stay covered at high pruning ratios.

    Args:
        score_epochs: epochs the EL2N score is measured on all data before it freezes and pruning starts.
        hard_cutoff: share of the data, hardest first, removed before stratifying (capped so the budget is met).
        strata: number of equal-width score bins the budget is spread over.

    Raises:
        ValueError: if ``score_epochs`` is below 1, ``hard_cutoff`` is not in ``[0, 1)`` or ``strata`` is below 1.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import Observations, ScoreState
        >>> method, state = CCS(strata=2), ScoreState(10)
        >>> el2n = torch.arange(10.0) / 10
        >>> method.update(state, Observations(torch.arange(10), torch.stack([el2n, el2n], dim=1)), epoch=0)
        >>> method.select(state, 0.5, torch.Generator().manual_seed(0)).indices.tolist()  # 9 cut; 2 easy, 3 hard
        [0, 3, 4, 7, 8]
    """

    name = "ccs"

    def __init__(self, score_epochs: int = 1, hard_cutoff: float = 0.1, strata: int = 50) -> None:
        super().__init__(score_epochs)
        if not 0.0 <= hard_cutoff < 1.0:
            raise ValueError(f"hard_cutoff must be in [0, 1), got {hard_cutoff!r}")
        if strata < 1:
            raise ValueError(f"strata must be >= 1, got {strata!r}")
        self.hard_cutoff, self.strata = float(hard_cutoff), int(strata)

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        n = state.num_samples
        budget = n - int(round(prune_ratio * n))
        if budget == n or self.scoring(state):
            return Selection(torch.arange(n), n, 1.0, n, prune_ratio)
        score = self.importance(state)
        # drop the hardest share, but never so many that the budget cannot be met
        n_hard = min(int(math.floor(self.hard_cutoff * n)), n - budget)
        order = torch.argsort(score, descending=True, stable=True)
        pool = order[n_hard:]
        values = score[pool]
        lo, hi = float(values.min()), float(values.max())
        width = (hi - lo) / self.strata or 1.0
        stratum = ((values - lo) / width).long().clamp_(0, self.strata - 1)
        sizes = torch.bincount(stratum, minlength=self.strata)
        quota = _even_quota(sizes, budget)
        # uniform within each stratum: order the pool by (stratum, random key), keep the first quota of each
        keys = torch.rand(pool.numel(), generator=epoch_generator(0, 0, _STRATA_STREAM))
        by_stratum = torch.argsort(stratum.double() + keys.double())
        starts = torch.cumsum(sizes, 0) - sizes
        rank = torch.arange(pool.numel()) - starts[stratum[by_stratum]]
        chosen = by_stratum[rank < quota[stratum[by_stratum]]]
        kept = pool[chosen].sort().values
        return Selection(kept, kept.numel(), 1.0, n, prune_ratio)


def _even_quota(sizes: torch.Tensor, budget: int) -> torch.Tensor:
    """Per-stratum counts summing to ``budget``: strata in ascending size take ``min(size, left / strata left)``."""
    quota = torch.zeros_like(sizes)
    order = torch.argsort(sizes, stable=True).tolist()  # one entry per stratum, not per sample
    left = budget
    for i, s in enumerate(order):
        take = min(int(sizes[s]), left // (len(order) - i))
        quota[s] = take
        left -= take
    # integer division can leave a remainder: hand it to strata that still have room
    for s in reversed(order):
        if left == 0:
            break
        extra = min(int(sizes[s] - quota[s]), left)
        quota[s] += extra
        left -= extra
    return quota
