"""TED pruning (Internal Generalization Distance, arXiv 2405.03228), as DESIGN.md section 2 reads it.

Score: Polyak average of the mask Taylor term ``T_k = eta <g_k, gbar>`` with head gradients against the
weighted batch. The ``ceil(p N / q)`` lowest scores are candidates, ``round(p N)`` of them are dropped at
random and the kept candidates weigh ``1 / (1 - q')``; the kept weights' mean is bounded (default 2), so a
step is at most twice plain training's. The variants that measured worse (other references, score-
proportional sampling, gates, cohort ranks, other readings) live in :mod:`lightning_ted.research`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from lightning_ted.core.selection import (
    Selection,
    bounded_drop,
    min_kept,
    random_drop_selection,
    stale_protected_selection,
)
from lightning_ted.core.state import Observations, ScoreState
from lightning_ted.methods.base import DEFAULT_MAX_WEIGHT, HeadStep, PruningMethod, TrainedBefore
from lightning_ted.methods.taylor import batch_reference
from lightning_ted.methods.ted_scores import SCALE_FREE, head_score


class TED(PruningMethod):
    """TED scores with a randomised, reweighted drop among the lowest (docs, "How TED works").

    Args:
        score: ``"igd"`` (``eta <g_k, gbar>``, the first-order loss increase from removing k) or
            ``"grad_norm"`` (``|g_k|``, the head-gradient norm: the self term of that increase).
        alpha: Polyak factor; each visit updates ``s <- alpha s + (1 - alpha) T_k``.
        q: share of the candidates dropped (1 = hard pruning of the lowest scores).
        max_staleness: a sample left out ``K - 1`` epochs in a row is no longer a candidate, so it is
            trained and re-scored at least every ``K`` epochs (``None`` disables the rule).
        normalize: bound ``c >= 1`` on the mean kept weight (the step scale): raw, unbiased weights below
            it, scaled down to mean ``c`` above it; ``True``: always mean 1; ``False``: raw weights.
        max_weight: largest weight of any kept sample (see :class:`PruningMethod`).

    Raises:
        ValueError: if ``score`` is not ``"igd"`` or ``"grad_norm"`` (the research readings are in
            ``lightning_ted.research.TEDVariant``), ``alpha`` is not in ``[0, 1)``, ``q`` is not in ``(0, 1]``,
            ``max_staleness`` is below 2, ``normalize`` is neither a bool nor a number ``>= 1``, or ``max_weight``
            is below 1 (or NaN).

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import ScoreState
        >>> state = ScoreState(10)
        >>> state.score = torch.arange(10.0)
        >>> state.last_epoch[:] = 0
        >>> sel = TED().select(state, prune_ratio=0.2, generator=torch.Generator().manual_seed(0))
        >>> len(sel), round(sel.mean_weight, 3)  # 2 of the 4 lowest dropped, the other 2 weigh 2
        (8, 1.25)
    """

    name = "ted"
    head_statistic = "taylor"
    keeps_unscored = True  # an unscored sample (+inf) is never a candidate
    #: the readings this class accepts (``lightning_ted.research.TEDVariant`` accepts every one).
    SCORES: tuple[str, ...] = ("igd", "grad_norm")

    def __init__(
        self,
        score: str = "igd",
        alpha: float = 0.5,
        q: float = 0.5,
        max_staleness: int | None = 4,
        normalize: bool | float = 2.0,
        max_weight: float = DEFAULT_MAX_WEIGHT,
    ) -> None:
        if score not in self.SCORES:
            raise ValueError(f"score must be one of {self.SCORES}, got {score!r}" + self._score_hint(score))
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must be in (0, 1] (share of candidates dropped), got {q!r}")
        if max_staleness is not None and max_staleness < 2:
            raise ValueError(f"max_staleness must be >= 2 epochs (or None to disable), got {max_staleness!r}")
        if not isinstance(normalize, bool) and not (isinstance(normalize, (int, float)) and normalize >= 1.0):
            raise ValueError(
                f"normalize must be True, False or a step-scale bound >= 1 (the largest mean kept weight), got "
                f"{normalize!r}"
            )
        self.score, self.alpha, self.q = score, float(alpha), float(q)
        self.max_staleness, self.normalize, self.max_weight = max_staleness, normalize, max_weight
        self.head_statistic = "grand" if score == "grad_norm" else "taylor"

    @staticmethod
    def _score_hint(score: str) -> str:
        from lightning_ted.methods.ted_scores import ALL_SCORES

        if score in ALL_SCORES:
            return f" ({score!r} measured worse; it stays reproducible as lightning_ted.research.TEDVariant)"
        return ""

    @property
    def reweights(self) -> bool:  # type: ignore[override]
        """Hard pruning (``q = 1``) without the staleness rule is the only TED rule that keeps weight 1."""
        return not (self.q == 1.0 and self.max_staleness is None)

    # ------------------------------------------------------------------ scores
    def head_values(self, step: HeadStep) -> Tensor:
        """``eta <g_k, gbar>`` per sample (or the reading ``score`` names); ``|g_k|`` for ``"grad_norm"``."""
        if self.head_statistic != "taylor":
            return super().head_values(step)
        h, delta = step.capture.per_sample_delta(step.loss_grad)
        weights = step.weight.to(delta.device, torch.float32)
        values = self.reference_values(h, delta, weights, step.capture.head.bias is not None, step)
        if self.score in SCALE_FREE:
            return values
        # eta <g_k, .>: the first-order loss change of one step; a tensor lr stays a tensor (float() would sync)
        return (step.lr if isinstance(step.lr, Tensor) else float(step.lr)) * values

    def reference_values(self, h: Tensor, delta: Tensor, weights: Tensor, bias: bool, step: HeadStep) -> Tensor:
        """The reading against the weighted batch's head gradient (an unbiased full-data estimate)."""
        grad_w, grad_b = batch_reference(h, delta, weights, bias=bias)
        return head_score(h, delta, weights, grad_w, grad_b, self.score, step.selection.num_samples)

    def observation_value(self, obs: Observations) -> Tensor:
        return obs.term

    # ------------------------------------------------------------------ selection
    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        selection = self.select_raw(state, prune_ratio, generator)
        if self.normalize is False or len(selection) == 0:
            return selection
        bound = 1.0 if self.normalize is True else float(self.normalize)  # True: mean 1
        mean = selection.mean_weight
        if mean <= bound:
            return selection  # within the bound: the raw (unbiased) weights (all 1 when the bound is 1)
        weights = selection.weights * (bound / mean)
        return replace(selection, num_unit_weight=0, weight=math.nan, per_sample=weights)

    def select_raw(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        """The kept set and its raw (unbiased) weights, before the step-scale bound."""
        self.drop_count(state.num_samples, prune_ratio)  # warns once when max_weight caps it
        bound = self.max_weight if self.reweights else math.inf
        if self.q < 1.0 and self.q > 1.0 - 1.0 / bound:
            self.warn_once(
                "q",
                f"TED q={self.q:g} would weigh kept candidates {1 / (1 - self.q):.3g}x, above "
                f"max_weight={bound:g}: the candidates widen so at most {1 - 1 / bound:.3g} of them are dropped.",
            )
        score = self.ranked_scores(state)
        if self.max_staleness is None:
            return random_drop_selection(score, prune_ratio, self.q, generator, bound)
        age = self.age(state)
        return stale_protected_selection(score, age, self.max_staleness, prune_ratio, self.q, generator, bound)

    def kept_range(self, num_samples: int, prune_ratio: float, epoch: int, before: TrainedBefore) -> tuple[int, int]:
        """Only scored samples are dropped, so an epoch keeps every sample no earlier epoch trained. Of ``S``
        scored ones a drop among candidates drops ``min(d, S - ceil(S / max_weight))`` of the schedule's ``d``
        for ``q < 1`` (the weight bound caps it), ``min(d, S)`` for ``q = 1``; once stale samples may exist
        (``max_staleness``) either can happen (:func:`~lightning_ted.core.selection.stale_protected_selection`).
        With every sample scored both are ``d``."""
        bound = self.max_weight if self.reweights else math.inf
        n_drop = bounded_drop(num_samples, prune_ratio, bound)

        def capped(scored: int) -> int:
            return max(0, min(n_drop, scored - min_kept(scored, bound)))

        def plain(scored: int) -> int:
            return min(n_drop, scored)

        if self.max_staleness is not None and epoch >= self.max_staleness:  # ages reach the rule's limit
            least, most = capped(before.fewest), plain(before.most)
        else:
            rule = capped if self.q < 1.0 else plain
            least, most = rule(before.fewest), rule(before.most)
        return num_samples - most, num_samples - least

    def ranked_scores(self, state: ScoreState) -> Tensor:
        """The scores the drop ranks (``+inf``: never dropped)."""
        return state.score

    @staticmethod
    def age(state: ScoreState) -> Tensor:
        """Epochs since each sample's last visit, counted at the epoch that follows the last one seen."""
        return (int(state.last_epoch.max()) + 1) - state.last_epoch
