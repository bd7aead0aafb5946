"""``random``: RS2, a fresh uniform subset each epoch, without replacement across epochs."""

from __future__ import annotations

import torch

from lightning_ted.core.selection import Selection, lowest_k_mask
from lightning_ted.core.state import ScoreState
from lightning_ted.methods.base import DEFAULT_MAX_WEIGHT, PruningMethod


class RandomSubset(PruningMethod):
    """RS2 (Okanovic et al. 2023, "Repeated Random Sampling for Minimizing the Time-to-Accuracy of Learning").

    Rule: each epoch keeps ``N - round(pN)`` samples drawn uniformly, weight 1, without replacement across
    epochs: the least-visited samples go first, so every sample is trained once before any is trained twice.

    Args:
        reweight: weigh the kept samples ``N / kept`` (= ``1 / (1 - p)``) so the epoch's summed loss keeps
            the full-data scale, as TED and InfoBatch do; the plain RS2 rule uses weight 1.
        max_weight: with ``reweight``, the largest weight ``N / kept`` allowed: higher ratios keep
            ``ceil(N / max_weight)`` samples instead (warned once).

    Raises:
        ValueError: if ``max_weight`` is below 1 (or NaN).

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import ScoreState
        >>> state = ScoreState(10)
        >>> len(RandomSubset().select(state, 0.3, torch.Generator().manual_seed(0)))
        7
        >>> round(RandomSubset(reweight=True).select(state, 0.3, torch.Generator().manual_seed(0)).weight, 3)  # 10/7
        1.429
    """

    name = "random"

    def __init__(self, reweight: bool = False, max_weight: float = DEFAULT_MAX_WEIGHT) -> None:
        self.reweight = bool(reweight)
        self.max_weight = max_weight

    @property
    def reweights(self) -> bool:  # type: ignore[override]
        return self.reweight

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        n = state.num_samples
        n_drop = self.drop_count(n, prune_ratio)
        if n_drop == 0:
            return Selection(torch.arange(n), n, 1.0, n, prune_ratio)
        keys = state.seen.float().add_(torch.rand(n, generator=generator))  # visits, ties broken at random
        kept = torch.nonzero(lowest_k_mask(keys, n - n_drop)).squeeze(1)
        if self.reweight:  # every kept sample carries the reweighting, none is "unit weight"
            return Selection(kept, 0, n / kept.numel(), n, prune_ratio)
        return Selection(kept, kept.numel(), 1.0, n, prune_ratio)
