"""``TEDVariant``: TED with every variant the benchmarks measured, kept so experiments/ can reproduce them.

Research only, not on the user's path: :class:`~lightning_ted.methods.TED` keeps what measured best. The
extra options (their results: ``experiments/results/ted_default.md``, ``score_validity_*.md``):

- ``score``: also ``"cross"`` (without k's own share of the reference), ``"ratio"`` (cross term over
  ``|g_k|^2``), ``"cosine"``, ``"horizon"`` (cross term plus k's own share of the full-data loss,
  ``|g_k|^2 / N``) and ``"ig"`` (the loss change the other samples caused between two visits).
- ``reference``: ``"ema"`` (EMA of batch head gradients, ``ema_decay``), ``"pruned"`` (mean head gradient
  of ``reference_size`` of the epoch's pruned samples from a forward-only pass through the module's
  ``per_sample_loss(batch)``) or ``"all"`` (kept batch and pruned reference mixed by their shares).
- ``selection="pps"``: keep k with probability ``pi_k = clamp(c a_k, pi_min, 1)`` (``a_k`` from the score by
  ``pps_transform``: ``"value"`` or ``"rank"``), an exact-size systematic sample weighted ``1 / pi_k``.
- ``gate="mean_loss"``: only below-mean-loss samples can be dropped (InfoBatch's gate, TED ranks inside).
- ``compare="epoch"``: a score is compared only with scores measured in the same epoch (its rank there).
- ``ranking="random"``: the equal-weight random control. Candidates are drawn uniformly among the scored
  samples each epoch, with TED's candidate share, staleness rule, weights and bounds, so a frontier gain
  over it is selection and not the step size of the reweighted drop.

Examples:
    >>> TEDVariant(score="cross", reference="ema").references.kind
    'ema'
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lightning_ted.core.collective import Collective
from lightning_ted.core.pps import positive_size, pps_selection, within_cohorts
from lightning_ted.core.selection import Selection, lowest_k_mask
from lightning_ted.core.state import Column, Observations, ScoreState
from lightning_ted.methods.base import DEFAULT_MAX_WEIGHT, EpochInputs, HeadStep, TrainedBefore
from lightning_ted.methods.pruned_reference import require_loss_method
from lightning_ted.methods.ted import TED
from lightning_ted.methods.ted_scores import ALL_SCORES, head_score
from lightning_ted.research.ted_reference import TEDReference

REFERENCES = ("batch", "ema", "pruned", "all")
SELECTIONS = ("drop", "pps")
PPS_TRANSFORMS = ("value", "rank")
GATES = (None, "mean_loss")
COMPARES = ("all", "epoch")
RANKINGS = ("score", "random")
LAST_LOSS = Column("last_loss")  # gate="mean_loss": each sample's loss at its last visit


class TEDVariant(TED):
    """:class:`TED` plus the research options above (keyword-only after TED's own arguments).

    Args:
        score, alpha, q, max_staleness, normalize, max_weight: as for :class:`TED`; ``score`` also takes
            ``"cross"``, ``"ratio"``, ``"cosine"``, ``"horizon"`` and ``"ig"``.
        reference: the score's reference gradient: ``"batch"`` (TED's), ``"ema"``, ``"pruned"`` or ``"all"``.
        ema_decay: decay of the ``"ema"`` reference.
        reference_size: pruned samples per epoch in the forward-only pass of ``"pruned"`` and ``"all"``.
        selection: ``"drop"`` (TED's randomised drop) or ``"pps"`` (probability-proportional-to-size sample).
        pps_transform: how ``"pps"`` turns a score into its size ``a_k``: ``"value"`` or ``"rank"``.
        pi_min: floor of the ``"pps"`` keep probability ``pi_k`` (``None``: ``1 / max_weight``).
        gate: ``None`` (TED's) or ``"mean_loss"``: only below-mean-loss samples can be dropped.
        compare: ``"all"`` (TED's) or ``"epoch"``: a score is compared only with those of its epoch.
        ranking: ``"score"`` (TED's) or ``"random"``, the equal-weight random control.

    Raises:
        ValueError: for any argument :class:`TED` refuses; if ``ema_decay`` is not in ``[0, 1)``,
            ``reference_size`` is below 1, a choice (``reference`` to ``ranking``) is not one of its values,
            ``pi_min`` is outside ``[1 / max_weight, 1]``, ``ranking="random"`` comes without
            ``selection="drop"``, or ``score="ig"`` comes with a ``gate``.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import ScoreState
        >>> state = ScoreState(10)
        >>> state.score = torch.arange(10.0)
        >>> state.last_epoch[:] = 0
        >>> sel = TEDVariant(ranking="random").select(state, 0.2, torch.Generator().manual_seed(0))
        >>> len(sel), round(sel.mean_weight, 3)  # TED's count and weights, its candidates drawn at random
        (8, 1.25)
    """

    SCORES = ALL_SCORES

    def __init__(
        self,
        score: str = "igd",
        alpha: float = 0.5,
        q: float = 0.5,
        max_staleness: int | None = 4,
        normalize: bool | float = 2.0,
        max_weight: float = DEFAULT_MAX_WEIGHT,
        *,
        reference: str = "batch",
        ema_decay: float = 0.9,
        reference_size: int = 2048,
        selection: str = "drop",
        pps_transform: str = "value",
        pi_min: float | None = None,
        gate: str | None = None,
        compare: str = "all",
        ranking: str = "score",
    ) -> None:
        super().__init__(score, alpha, q, max_staleness, normalize, max_weight)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        if reference_size < 1:
            raise ValueError(f"reference_size must be >= 1 pruned samples per epoch, got {reference_size!r}")
        for arg, value, choices in (
            ("reference", reference, REFERENCES),
            ("selection", selection, SELECTIONS),
            ("pps_transform", pps_transform, PPS_TRANSFORMS),
            ("gate", gate, GATES),
            ("compare", compare, COMPARES),
            ("ranking", ranking, RANKINGS),
        ):
            if value not in choices:
                raise ValueError(f"{arg} must be one of {choices}, got {value!r}")
        if pi_min is not None and not (1.0 / self.max_weight <= pi_min <= 1.0):
            raise ValueError(
                f"pi_min={pi_min!r} would let a kept sample weigh 1/pi_min = {1 / pi_min:.3g}x, above "
                f"max_weight={self.max_weight:g}: use pi_min in [1/max_weight, 1] or raise max_weight."
            )
        if ranking == "random" and selection != "drop":
            raise ValueError("ranking='random' draws TED's candidates at random; it needs selection='drop'")
        if score == "ig" and gate is not None:
            raise ValueError("score='ig' keeps each sample's expected loss where the gate keeps its last loss; use one")
        self.selection, self.pps_transform, self.pi_min = selection, pps_transform, pi_min
        self.gate, self.compare, self.reference, self.ranking = gate, compare, reference, ranking
        self._draw: Tensor | None = None  # ranking="random": the uniform keys, set only inside select_raw
        self.ema_decay, self.reference_size = float(ema_decay), int(reference_size)
        self.columns = (LAST_LOSS,) if gate is not None else (EXPECTED_LOSS,) if score == "ig" else ()
        self.exact_kept_count = gate is None
        self.references = TEDReference(reference, self.ema_decay, self.reference_size)

    @property
    def reweights(self) -> bool:  # type: ignore[override]
        return self.selection == "pps" or super().reweights

    # ------------------------------------------------------------------ run hooks (the callback calls them)
    def start_fit(self, pl_module: Any, fresh: bool) -> None:
        if fresh:
            self.references.reset()
        if self.head_statistic == "taylor" and self.references.needs_forward_pass:
            require_loss_method(pl_module, self.reference)

    def start_epoch(self, trainer: Any, pl_module: Any, inputs: EpochInputs, head: Any) -> None:
        if self.head_statistic == "taylor":
            self.references.start_epoch(trainer, pl_module, inputs, head)

    def reference_values(self, h: Tensor, delta: Tensor, weights: Tensor, bias: bool, step: HeadStep) -> Tensor:
        grad_w, grad_b, weights, share = self.references.gradient(h, delta, weights, bias, step.selection.actual_ratio)
        return head_score(h, delta, weights, grad_w, grad_b, self.score, step.selection.num_samples, share)

    def run_state_dict(self, collective: Collective | None) -> dict:
        return self.references.state_dict(collective)

    def load_run_state_dict(self, state: dict, world: int, rank: int) -> None:
        self.references.load_state_dict(state, world, rank)

    # ------------------------------------------------------------------ selection
    @property
    def pi_floor(self) -> float:
        """The floor of ``pi_k`` in use: ``pi_min``, never below ``1 / max_weight``."""
        return max(self.pi_min or 0.0, 1.0 / self.max_weight)

    def weight_limit(self) -> tuple[str, str]:
        if self.selection == "pps" and self.pi_floor > 1.0 / self.max_weight:
            return f"pi_min={self.pi_min:g} (weights at most 1/pi_min = {1 / self.pi_min:.3g}x)", "lower pi_min"
        return super().weight_limit()

    def min_kept(self, num_samples: int) -> int:
        if self.selection == "pps":
            return min(num_samples, math.ceil(num_samples * self.pi_floor - 1e-9))
        return super().min_kept(num_samples)

    def select_raw(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        if self.ranking == "random":  # uniform keys for TED's ranking, held only for this selection (O(N))
            self._draw = torch.rand(state.num_samples, generator=generator).to(state.score.device)
            try:
                return super().select_raw(state, prune_ratio, generator)  # ranking="random" needs selection="drop"
            finally:
                self._draw = None
        if self.selection == "drop":
            return super().select_raw(state, prune_ratio, generator)
        n_keep = state.num_samples - self.drop_count(state.num_samples, prune_ratio)
        score = self.gated(state, state.score)
        age = self.age(state)
        forced = ~torch.isfinite(score)  # unscored and gated: kept with probability 1
        if self.max_staleness is not None:
            forced |= self._stalest(forced, age >= self.max_staleness, age, n_keep, generator)
        pool = ~forced
        size = torch.ones(state.num_samples, dtype=torch.float64)
        pool_size = positive_size(score[pool], self.pps_transform)
        if self.compare == "epoch":
            pool_size = within_cohorts(pool_size, state.last_epoch[pool], self.pps_transform, score[pool])
        size[pool] = pool_size
        return pps_selection(size, forced, n_keep, self.pi_floor, generator, prune_ratio)

    def ranked_scores(self, state: ScoreState) -> Tensor:
        score = self.gated(state, state.score)
        if self.ranking == "random" and self._draw is not None:  # the scored keep a uniform key, the rest +inf
            return torch.where(torch.isfinite(score), self._draw, score)
        if self.compare == "all":
            return score
        scored = torch.isfinite(score)  # each finite score becomes its rank inside its measurement epoch over N
        out = score.clone()
        out[scored] = within_cohorts(score[scored], state.last_epoch[scored], "rank", score[scored]).float()
        return out

    def gated(self, state: ScoreState, score: Tensor) -> Tensor:
        """Scores with the samples the gate protects set to ``+inf`` (never dropped, weight 1)."""
        if self.gate is None:
            return score
        scored = torch.isfinite(score)
        n_scored = int(torch.count_nonzero(scored))
        if n_scored == 0:
            return score
        last = state.columns[LAST_LOSS.name]
        mean = torch.where(scored, last, 0.0).sum(dtype=torch.float64) / n_scored
        return score.masked_fill(last.double() >= mean, math.inf)

    def _stalest(self, forced: Tensor, stale: Tensor, age: Tensor, n_keep: int, gen: torch.Generator) -> Tensor:
        """The stale samples kept for sure: all of them if the others' floor still fits in ``n_keep``,
        else the stalest that do (ties at random)."""
        stale = stale & ~forced
        n_stale, n_forced = int(torch.count_nonzero(stale)), int(torch.count_nonzero(forced))
        rest, p = forced.numel() - n_forced, self.pi_floor

        def kept_at_least(s: int) -> int:  # kept count when s stale samples are forced
            return n_forced + s + math.ceil((rest - s) * p - 1e-9)

        if n_stale == 0 or kept_at_least(n_stale) <= n_keep:
            return stale
        s = max(0, min(n_stale, int((n_keep - n_forced - rest * p) / (1.0 - p)))) if p < 1.0 else n_stale
        while s < n_stale and kept_at_least(s + 1) <= n_keep:
            s += 1
        while s > 0 and kept_at_least(s) > n_keep:
            s -= 1
        keys = (-age.double() - 0.5 * torch.rand(age.numel(), generator=gen, dtype=torch.float64)).masked_fill_(
            ~stale, math.inf
        )
        return lowest_k_mask(keys, s)

    # ------------------------------------------------------------------ scores
    def expected_kept(self, num_samples: int, prune_ratio: float, epoch: int) -> int:
        if self.score == "ig" and epoch == 1:
            return num_samples  # "ig" scores a sample at its second visit: nothing is a candidate before
        return super().expected_kept(num_samples, prune_ratio, epoch)

    def kept_range(self, num_samples: int, prune_ratio: float, epoch: int, before: TrainedBefore) -> tuple[int, int]:
        """TED's bounds for the drop selection; "ig" (scored at a sample's second visit) and "pps" (unscored
        samples forced in) are exact only once every sample is scored, which "ig" knows only when no earlier
        epoch was cut short; before that they keep between the scored count and everything."""
        ig = self.score == "ig"
        if before.most == 0 or (ig and epoch <= 1):
            return num_samples, num_samples  # nothing is scored yet: every sample is kept
        if not ig and self.selection == "drop":
            return super().kept_range(num_samples, prune_ratio, epoch, before)
        kept = self.expected_kept(num_samples, prune_ratio, epoch)
        scored = before.whole if ig else before.fewest == num_samples
        return (kept, kept) if scored else (kept, num_samples)

    def update(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        """TED's update; ``"ig"``: of the loss change between visits; with a gate, its ``last_loss`` column also takes
        each visit's last loss."""
        if self.score == "ig":
            return internal_generalization_update(state, obs, epoch, self.alpha)
        if self.gate is None:
            return super().update(state, obs, epoch)
        idx, values, fresh = state.visit(obs.index, torch.stack([obs.term, obs.loss], dim=1), epoch)
        a = self.alpha
        state.score[idx] = torch.where(fresh, values[:, 0], a * state.score[idx] + (1.0 - a) * values[:, 0])
        state.columns[LAST_LOSS.name][idx] = values[:, 1]


EXPECTED_LOSS = Column("expected_loss")  # score="ig": each sample's loss expected after its own step


def internal_generalization_update(state: ScoreState, obs: Observations, epoch: int, alpha: float) -> None:
    """``score="ig"``: the change of each sample's loss between its visits that the other samples caused.

    The ``expected_loss`` column holds the loss expected right after the last visit (its loss minus its own step's
    first-order decrease ``eta w_k |g_k|^2 / B``, the visit's ``term``); the next visit's loss minus that is
    what the rest of the data did to the sample meanwhile (negative: it generalizes to it). Polyak smoothed;
    a sample stays unscored (``+inf``, never dropped) until its second visit.
    """
    idx, values, fresh = state.visit(obs.index, torch.stack([obs.term, obs.loss], dim=1), epoch)
    change = values[:, 1] - state.columns["expected_loss"][idx]
    old = state.score[idx]
    smoothed = torch.where(torch.isfinite(old), alpha * old + (1.0 - alpha) * change, change)
    state.score[idx] = torch.where(fresh, old, smoothed)
    state.columns["expected_loss"][idx] = values[:, 1] - values[:, 0]
