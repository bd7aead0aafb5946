"""``infobatch``: prune a share of the well-learned (below-mean loss) samples and rescale the rest."""

from __future__ import annotations

import torch

from lightning_ted.core.selection import Selection
from lightning_ted.core.state import ScoreState
from lightning_ted.methods.base import DEFAULT_MAX_WEIGHT, PruningMethod


class InfoBatch(PruningMethod):
    """InfoBatch (Qin et al., ICLR 2024, "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data Pruning").

    Rule: score = the sample's last loss; samples below the mean score are candidates, each dropped with
    probability ``r`` (the schedule's ratio) and, if kept, weighted ``1 / (1 - r)``. Full data in the
    last epochs comes from the schedule's anneal (InfoBatch's ``delta = 1 - anneal``). Since ``r`` is a
    share of the candidates only, the saved fraction is below ``r``: report the achieved fraction.
    ``max_weight`` caps ``1 / (1 - r)``: a higher ``r`` drops ``1 - 1 / max_weight`` of the candidates
    instead (warned once).

    Args:
        max_weight: largest weight ``1 / (1 - r)`` of a kept candidate (``math.inf`` lifts the bound).

    Raises:
        ValueError: if ``max_weight`` is below 1 (or NaN).

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import ScoreState
        >>> state = ScoreState(8)
        >>> state.score = torch.arange(8.0)  # last losses, mean 3.5: samples 0 to 3 are candidates
        >>> sel = InfoBatch().select(state, 0.5, torch.Generator().manual_seed(0))
        >>> len(sel), sel.num_unit_weight, sel.weight  # 4 above the mean, 1 kept candidate weighing 1 / (1 - 0.5)
        (5, 4, 2.0)
    """

    name = "infobatch"
    exact_kept_count = False
    reweights = True

    def __init__(self, max_weight: float = DEFAULT_MAX_WEIGHT) -> None:
        self.max_weight = max_weight

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        if not 0.0 <= prune_ratio < 1.0:
            raise ValueError(
                f"InfoBatch's prune ratio r must be in [0, 1) (kept samples weigh 1/(1-r)), got {prune_ratio!r}"
            )
        n, score = state.num_samples, state.score
        scored = torch.isfinite(score)
        n_scored = int(torch.count_nonzero(scored))
        if prune_ratio <= 0 or n_scored == 0:
            return Selection(torch.arange(n), n, 1.0, n, prune_ratio)
        r = min(prune_ratio, 1.0 - 1.0 / self.max_weight)
        if r < prune_ratio:
            self.warn_once(
                "ratio",
                f"pruning method 'infobatch': prune ratio {prune_ratio:g} would weigh kept candidates "
                f"{1 / (1 - prune_ratio):.3g}x, above max_weight={self.max_weight:g}; dropping a share {r:.3g} of "
                "the candidates instead whenever the ratio is that high. Lower the schedule's ratio, or raise "
                "max_weight if you want the heavier weights.",
            )
        mean = torch.where(scored, score, 0.0).sum(dtype=torch.float64) / n_scored
        candidate = score < mean  # +inf (unscored) is never below the mean
        dropped = torch.rand(n, generator=generator) < r
        plain = torch.nonzero(~candidate).squeeze(1)
        kept_cand = torch.nonzero(candidate & ~dropped).squeeze(1)
        weight = min(1.0 / (1.0 - r), self.max_weight)  # exactly max_weight when capped, not 1 ulp above
        return Selection(torch.cat([plain, kept_cand]), plain.numel(), weight, n, prune_ratio)
