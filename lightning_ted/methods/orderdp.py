"""``orderdp``: a uniformly random subset each epoch, then the highest-loss share of it."""

from __future__ import annotations

import math
import numbers

import torch

from lightning_ted.core.selection import Selection, lowest_k_mask
from lightning_ted.core.state import ScoreState
from lightning_ted.methods.base import PruningMethod


class OrderDP(PruningMethod):
    """OrderDP (Jin, Xu et al., ICLR 2026, "OrderDP: A Theoretically Guaranteed Lossless Dynamic Data Pruning
    Framework").

    The paper's rule: each epoch draws a uniformly random subset of ``int(subset * N)`` samples (without
    replacement within the epoch, a fresh independent draw every epoch) and trains the ``int(keep * S)`` of
    them with the highest score, the loss each sample had when it was last trained (no extra forward pass),
    all with weight 1. Its two fractions are fixed (0.75 and 0.85 by default, so every epoch trains
    ``subset * keep`` = 63.75% of the data) and it prunes every epoch, the first and last included.

    Here the schedule's ratio ``p`` sets the kept count instead, exactly: ``K = N - round(p N)``, weight 1.
    ``subset`` and ``keep`` set how that saving splits between the two stages: the epoch's fractions are
    ``(1 - p) ** b`` (random stage) and ``(1 - p) ** (1 - b)`` (loss stage), with
    ``b = ln(subset) / ln(subset * keep)``, so their product is ``1 - p``, each stays in ``(0, 1]``, and at
    ``p = 1 - subset * keep`` (:attr:`paper_ratio`, 0.3625 by default) they are the paper's ``subset`` and
    ``keep``. The random subset has ``S = round(N (1 - p) ** b)`` samples (at least ``K``). So
    ``ConstantSchedule(OrderDP().paper_ratio, warmup_epochs=0, anneal=0)`` is the paper's setting (up to
    its ``int`` rounding, at most two samples); a ratio-0 epoch (warm-up, anneal) keeps everything.
    ``subset=1`` is a pure highest-loss rule, ``keep=1`` a pure random one.

    One deviation: the paper gives a never-trained sample a constant score (3), so it may be skipped before
    it was scored once. Here an unscored sample (score ``+inf``) joins the random subset first and ranks
    highest in it: every unscored sample is kept while they fit in ``K``; if more remain (the first epoch
    without warm-up) a uniformly random ``K`` of them are kept. Ties, unscored ones included, are broken by
    the epoch's random order, not by index. The kept count never depends on the scores.

    Args:
        subset: the paper's random-subset fraction, in ``(0, 1]``: with ``keep``, the split of the schedule's
            saving between the random stage and the loss stage (see above).
        keep: the paper's fraction of the random subset kept by highest loss, in ``(0, 1]``.

    Raises:
        ValueError: ``subset`` or ``keep`` is not a number in ``(0, 1]``, or both are 1 (no stage would
            drop anything, so the ratio cannot be split between them).

    Examples:
        >>> from lightning_ted.methods import OrderDP
        >>> method = OrderDP()  # the paper's defaults
        >>> round(method.paper_ratio, 4), method.stage_sizes(1000, 0.3625)  # 750 random, 638 of them kept
        (0.3625, (750, 638))
        >>> method.stage_sizes(1000, 0.5), method.stage_sizes(1000, 0.0)
        ((642, 500), (1000, 1000))
    """

    name = "orderdp"

    def __init__(self, subset: float = 0.75, keep: float = 0.85) -> None:
        self.subset = _fraction("subset", subset, "the share of the data drawn at random each epoch")
        self.keep = _fraction("keep", keep, "the share of the random subset kept by highest loss")
        if self.subset == 1.0 and self.keep == 1.0:
            raise ValueError(
                "OrderDP: subset=1 and keep=1 prune nothing, so the schedule's ratio cannot be split between "
                "the random and the loss stage; lower one of them (the paper uses subset=0.75, keep=0.85), or "
                "use FullData() to train on all data."
            )
        #: exponent ``b``: the random stage's share of ``ln(1 - p)``.
        self.random_share = math.log(self.subset) / math.log(self.subset * self.keep)

    @property
    def paper_ratio(self) -> float:
        """The schedule ratio at which an epoch uses the paper's fixed fractions: ``1 - subset * keep``."""
        return 1.0 - self.subset * self.keep

    def stage_sizes(self, num_samples: int, prune_ratio: float) -> tuple[int, int]:
        """``(S, K)``: the random subset's size and the kept count of an epoch that prunes ``prune_ratio``."""
        n_keep = num_samples - self.drop_count(num_samples, prune_ratio)
        if n_keep >= num_samples:
            return num_samples, num_samples
        n_subset = round(num_samples * (1.0 - prune_ratio) ** self.random_share)
        return min(num_samples, max(n_keep, n_subset)), n_keep

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        n = state.num_samples
        n_subset, n_keep = self.stage_sizes(n, prune_ratio)
        if n_keep >= n:
            return Selection(torch.arange(n), n, 1.0, n, prune_ratio)
        # work in a uniformly random order: the first positions form the subset, and any tie (equal losses,
        # unscored samples) falls to the earlier position, so ties too are broken at random
        order = torch.randperm(n, generator=generator)
        score = state.score[order]
        unscored = torch.isposinf(score)
        in_subset = lowest_k_mask(unscored.logical_not().to(torch.float32), n_subset)  # unscored first
        key = score.neg_().masked_fill_(in_subset.logical_not_(), math.inf)  # highest loss = lowest key
        kept = lowest_k_mask(key, n_keep)
        return Selection(order[kept].sort().values, n_keep, 1.0, n, prune_ratio)


def _fraction(argument: str, value: float, meaning: str) -> float:
    """``value`` as a float in ``(0, 1]``, or a ValueError naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(
            f"OrderDP: {argument} must be a number in (0, 1] ({meaning}), got {value!r}; "
            "the paper uses subset=0.75, keep=0.85."
        )
    return float(value)
