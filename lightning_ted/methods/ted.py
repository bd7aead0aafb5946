"""TED pruning (Internal Generalization Distance, arXiv 2405.03228), as DESIGN.md section 2 reads it.

Score: Polyak average of the mask Taylor term ``T_k = eta <g_k, gbar>`` with head gradients. Removing k
raises the full-data loss by about ``T_k``, so the lowest-scoring samples are the ones whose absence the
rest of the data covers. Rules: ``"drop"`` (default): the ``ceil(p N / q)`` lowest scores are candidates,
``round(p N)`` of them are dropped at random and the kept candidates weigh ``1 / (1 - q')``. ``"pps"``:
every sample is kept with a probability that grows with its score and weighs ``1 / pi`` (unbiased).
By default the kept weights' mean is bounded by 2 (= 1 / (1 - q)): ranked drops keep their unbiased weights,
uniform ones are scaled down so a step is at most twice plain training's.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from lightning_ted.methods.base import DEFAULT_MAX_WEIGHT, HeadStep, PruningMethod
from lightning_ted.methods.ted_reference import TEDReference
from lightning_ted.pps import positive_size, pps_selection, within_cohorts
from lightning_ted.pruned_reference import require_loss_method
from lightning_ted.selection import Selection, lowest_k_mask, random_drop_selection, stale_protected_selection
from lightning_ted.state import Observations, ScoreState
from lightning_ted.taylor import SCORE_VARIANTS, grad_sq_norms, self_terms

REFERENCES = ("batch", "ema", "pruned", "all")
SCORES = (*SCORE_VARIANTS, "grad_norm", "horizon", "ig")
SELECTIONS = ("drop", "pps")
PPS_TRANSFORMS = ("value", "rank")
GATES = (None, "mean_loss")
COMPARES = ("all", "epoch")


class TED(PruningMethod):
    """TED scores with soft (randomised, reweighted) selection.

    Args:
        alpha: Polyak factor; each visit updates ``s <- alpha s + (1 - alpha) T_k``.
        q: share of the candidates that is dropped (1 = hard pruning of the lowest scores).
        reference: reference gradient ``gbar``: ``"batch"`` (the weighted batch mean: an unbiased
            estimate of the full-data gradient from the kept samples); ``"ema"`` (EMA of batch-mean
            head gradients; ``ema_decay`` sets its memory); ``"pruned"`` (mean head gradient of the
            epoch's pruned samples from a forward-only pass at epoch start: the paper's question, how
            much fitting k helps the samples left out; the module must define ``per_sample_loss(batch)``);
            ``"all"`` (the kept batch and the pruned reference mixed by their shares of the data).
            Epochs that prune nothing use ``"batch"``.
        reference_size: pruned samples the forward-only pass scores per epoch (a uniform subsample).
        ema_decay: decay of the EMA reference.
        score: which quantity ranks the samples (the lowest are candidates):
            ``"igd"``: ``eta <g_k, gbar>``, the first-order loss increase from removing k (DESIGN.md 2);
            ``"cross"``: ``eta <g_k, gbar_{-k}>`` without k's own share of the reference, so a large
            ``|g_k|`` (mislabelled, hard) no longer props its score up: samples the rest pulls against
            become candidates; ``"ratio"``: the cross term over ``|g_k|^2``, the share of k's descent the
            other samples provide (internal generalization), scale-free across epochs; ``"cosine"``:
            ``cos(g_k, gbar)``, alignment alone, blind to the gradient's size; ``"grad_norm"``: the
            head-gradient norm ``|g_k|`` (the callback reads the ``"grand"`` head statistic instead of the
            Taylor term; classification heads only): with ``selection="pps"``, ``pi ~ |g_k|`` is the
            variance-minimising unbiased subsampling (Alain et al. 2015; Katharopoulos & Fleuret 2018).
        max_staleness: ``K``: a sample left out of training for ``K - 1`` epochs in a row is no longer a
            candidate (its score was measured on an older model), so it is trained and re-scored at the
            latest ``K`` epochs after its last visit, whenever the stale samples fit in the kept set
            (otherwise the stalest go first): on fixed scores the longest gap between two trainings is
            ``max(K, ceil(1 / (1 - p)) + 1)`` epochs, K up to p = 0.65 with K = 4 (a kept share below 1/K
            cannot rotate faster). Kept stale samples weigh like the kept candidates. The
            default ``K = 4`` tied the best variant on validation in ``experiments/ablate_ted.py``
            (76.53 vs 76.55 mean accuracy) and guarantees coverage; ``None`` disables the rule. Under
            ``"pps"`` stale samples are kept with probability 1 (weight 1), the stalest first if they
            do not all fit.
        selection: the rule that turns scores into the kept set. ``"drop"`` (above, the default) or
            ``"pps"``: sample k is kept with probability ``pi_k = clamp(c a_k, pi_min, 1)``, ``a_k`` a
            positive size from its score (``pps_transform``) and ``c`` set so ``sum pi_k`` is exactly the
            schedule's kept count; an exact-size systematic sample from the ``(seed, epoch)`` generator
            keeps that many, each weighted ``1 / pi_k`` (Horvitz-Thompson), so the expected weighted
            gradient is the full-data one. ``q`` is unused.
        pps_transform: the size ``a_k``: ``"value"``: ``max(score, 0)`` (low and negative scores sit at
            ``pi_min``); ``"rank"``: the score's rank over N, robust to the score's scale and outliers.
        pi_min: floor of ``pi_k`` (``None``: ``1 / max_weight``); it bounds the weights by ``1 / pi_min``
            and raises the fewest kept samples to ``ceil(N pi_min)``.
        gate: ``"mean_loss"``: only samples whose last loss is below the mean loss can be dropped
            (InfoBatch's gate), the rule ranks those; the kept count then depends on the losses.
        compare: ``"epoch"``: a score is compared only with scores measured in the same epoch (its rank
            inside that cohort, or under ``"pps"``/``"value"`` its size over the cohort's mean), since
            scores of older models drift; ``"all"``: every score against every other.
        max_weight: largest weight of any kept sample (see :class:`PruningMethod`).
        normalize: a bound on the step scale, the mean kept weight (each step's gradient is about that many
            times plain training's). ``c >= 1`` (default 2.0 = ``1 / (1 - q)`` at the default ``q``): the
            raw weights while their mean is at most ``c``, so the ranked drop of ``p < q`` stays unbiased;
            beyond, they are scaled down to mean ``c``, relative weights kept. ``True``: always divide by
            the mean (mean 1: each step's loss is the self-normalized, Hajek, estimate of the mean loss).
            ``False``: raw weights, summing to about N (the epoch's gradient unbiased for the full data's),
            which multiplies every step by ``1 / (1 - p)`` when the drop is uniform: SGD diverged on every
            frontier task at 70% saved. On the frontier (``experiments/results/ted_default.md``) the bound
            2.0 ranked first of the TED rules, ``True`` and ``q = 0.8`` next, ``False`` last.
    """

    name = "ted"
    head_statistic = "taylor"

    def __init__(
        self,
        alpha: float = 0.5,
        q: float = 0.5,
        reference: str = "batch",
        ema_decay: float = 0.9,
        score: str = "igd",
        max_staleness: int | None = 4,
        reference_size: int = 2048,
        selection: str = "drop",
        pps_transform: str = "value",
        pi_min: float | None = None,
        gate: str | None = None,
        compare: str = "all",
        max_weight: float = DEFAULT_MAX_WEIGHT,
        normalize: bool | float = 2.0,
    ) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must be in (0, 1] (share of candidates dropped), got {q!r}")
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if max_staleness is not None and max_staleness < 2:
            raise ValueError(f"max_staleness must be >= 2 epochs (or None to disable), got {max_staleness!r}")
        if reference_size < 1:
            raise ValueError(f"reference_size must be >= 1 pruned samples per epoch, got {reference_size!r}")
        for arg, value, choices in (
            ("selection", selection, SELECTIONS),
            ("pps_transform", pps_transform, PPS_TRANSFORMS),
            ("gate", gate, GATES),
            ("compare", compare, COMPARES),
        ):
            if value not in choices:
                raise ValueError(f"{arg} must be one of {choices}, got {value!r}")
        self.max_weight = max_weight
        if pi_min is not None and not (1.0 / self.max_weight <= pi_min <= 1.0):
            raise ValueError(
                f"pi_min={pi_min!r} would let a kept sample weigh 1/pi_min = {1 / pi_min:.3g}x, above "
                f"max_weight={self.max_weight:g}: use pi_min in [1/max_weight, 1] or raise max_weight."
            )
        self.selection, self.pps_transform, self.pi_min = selection, pps_transform, pi_min
        self.gate, self.compare = gate, compare
        if score == "ig" and gate is not None:
            raise ValueError("score='ig' keeps each sample's expected loss where the gate keeps its last loss; use one")
        self.head_statistic = "grand" if score == "grad_norm" else "taylor"
        self.uses_aux = gate is not None or score == "ig"  # the gate's last loss; ig's expected loss
        self.exact_kept_count = gate is None
        self.reference_size = int(reference_size)
        self.score = score
        self.max_staleness = max_staleness
        self.alpha = float(alpha)
        self.q = float(q)
        self.reference = reference
        self.ema_decay = float(ema_decay)
        if not isinstance(normalize, bool) and not (isinstance(normalize, (int, float)) and normalize >= 1.0):
            raise ValueError(
                f"normalize must be True, False or a step-scale bound >= 1 (the largest mean kept weight), got "
                f"{normalize!r}"
            )
        self.normalize = normalize
        ref_score = "cross" if score == "horizon" else "igd" if score == "ig" else score
        self.references = TEDReference(reference, ref_score, self.ema_decay, self.reference_size)

    # ------------------------------------------------------------------ run hooks (the callback calls them)
    def start_fit(self, pl_module: Any, fresh: bool) -> None:
        if fresh:
            self.references.reset()
        if self.head_statistic == "taylor" and self.references.needs_forward_pass:
            require_loss_method(pl_module, self.reference)

    def start_epoch(self, trainer: Any, pl_module: Any, datamodule: Any, head: Any) -> None:
        if self.head_statistic == "taylor":
            self.references.start_epoch(trainer, pl_module, datamodule, head)

    def head_values(self, step: HeadStep) -> Tensor:
        """``eta <g_k, gbar>`` per sample (or the score variant) against the reference; the head-gradient
        norm for ``score="grad_norm"``."""
        if self.head_statistic != "taylor":
            return super().head_values(step)
        h, delta = step.capture.per_sample_delta(step.loss_grad)
        weights = step.weight.to(delta.device, torch.float32)
        bias = step.capture.head.bias is not None
        if self.score == "ig":  # the own step's first-order decrease of the loss, w_k |g_k|^2 / B
            values = self_terms(h, delta, weights, bias)
        else:
            values = self.references.values(h, delta, weights, bias, step.selection.actual_ratio)
        if self.score in ("ratio", "cosine"):  # scale-free variants
            return values
        if self.score == "horizon":  # the sample's own share of the full-data loss: |g_k|^2 / N
            values = values + grad_sq_norms(h, delta, bias) / step.selection.num_samples
        # eta <g_k, .>: the first-order loss change of one step; a tensor lr stays a tensor (float() would sync)
        return (step.lr if isinstance(step.lr, Tensor) else float(step.lr)) * values

    def run_state_dict(self, trainer: Any) -> dict:
        return self.references.state_dict(trainer)

    def load_run_state_dict(self, state: dict, world: int, rank: int) -> None:
        self.references.load_state_dict(state, world, rank)

    @property
    def reweights(self) -> bool:  # type: ignore[override]
        """Hard pruning (``q = 1``) without the staleness rule is the only TED rule that keeps weight 1."""
        return not (self.selection == "drop" and self.q == 1.0 and self.max_staleness is None)

    @property
    def pi_floor(self) -> float:
        """The floor of ``pi_k`` in use: ``pi_min``, never below ``1 / max_weight``."""
        return max(self.pi_min or 0.0, 1.0 / self.max_weight)

    def min_kept(self, num_samples: int) -> int:
        if self.selection == "pps":
            return min(num_samples, math.ceil(num_samples * self.pi_floor - 1e-9))
        return super().min_kept(num_samples)

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        selection = self._select(state, prune_ratio, generator)
        if self.normalize is False or len(selection) == 0:
            return selection
        bound = 1.0 if self.normalize is True else float(self.normalize)  # True: mean 1
        mean = selection.mean_weight
        if mean <= bound:
            return selection  # within the bound: the raw (unbiased) weights (all 1 when the bound is 1)
        weights = selection.weights * (bound / mean)
        return replace(selection, num_unit_weight=0, weight=math.nan, per_sample=weights)

    def _select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        n_drop = self.drop_count(state.num_samples, prune_ratio)  # warns once when max_weight caps it
        age = (int(state.last_epoch.max()) + 1) - state.last_epoch  # the epoch selected follows the last seen
        if self.selection == "pps":
            return self._select_pps(state, state.num_samples - n_drop, age, prune_ratio, generator)
        bound = self.max_weight if self.reweights else math.inf
        if self.q < 1.0 and self.q > 1.0 - 1.0 / bound:
            self.warn_once(
                "q",
                f"TED q={self.q:g} would weigh kept candidates {1 / (1 - self.q):.3g}x, above "
                f"max_weight={bound:g}: the candidates widen so at most {1 - 1 / bound:.3g} of them are dropped.",
            )
        score = self._comparable(state, self._gated(state, state.score))
        if self.max_staleness is None:
            return random_drop_selection(score, prune_ratio, self.q, generator, bound)
        return stale_protected_selection(score, age, self.max_staleness, prune_ratio, self.q, generator, bound)

    def _gated(self, state: ScoreState, score: Tensor) -> Tensor:
        """Scores with the samples the gate protects set to ``+inf`` (never dropped, weight 1)."""
        if self.gate is None:
            return score
        scored = torch.isfinite(score)
        n_scored = int(torch.count_nonzero(scored))
        if n_scored == 0:
            return score
        mean = torch.where(scored, state.aux, 0.0).sum(dtype=torch.float64) / n_scored
        return score.masked_fill(state.aux.double() >= mean, math.inf)

    def _comparable(self, state: ScoreState, score: Tensor) -> Tensor:
        """With ``compare="epoch"``, each finite score becomes its rank inside its measurement epoch over N."""
        if self.compare == "all":
            return score
        scored = torch.isfinite(score)
        out = score.clone()
        out[scored] = within_cohorts(score[scored], state.last_epoch[scored], "rank", score[scored]).float()
        return out

    def _select_pps(
        self, state: ScoreState, n_keep: int, age: Tensor, prune_ratio: float, generator: torch.Generator
    ) -> Selection:
        score = self._gated(state, state.score)
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

    def observation_value(self, obs: Observations) -> Tensor:
        return obs.term

    def update(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        """Polyak update of the score; with a gate, ``state.aux`` also takes each visit's last loss."""
        if self.score == "ig":
            return internal_generalization_update(state, obs, epoch, self.alpha)
        if self.gate is None:
            return super().update(state, obs, epoch)
        idx, values, fresh = state.visit(obs.index, torch.stack([obs.term, obs.loss], dim=1), epoch)
        a = self.alpha
        state.score[idx] = torch.where(fresh, values[:, 0], a * state.score[idx] + (1.0 - a) * values[:, 0])
        state.aux[idx] = values[:, 1]


def internal_generalization_update(state: ScoreState, obs: Observations, epoch: int, alpha: float) -> None:
    """``score="ig"``: the change of each sample's loss between its visits that the other samples caused.

    ``state.aux`` holds the loss expected right after the last visit (its loss minus its own step's
    first-order decrease ``eta w_k |g_k|^2 / B``, the visit's ``term``); the next visit's loss minus that
    is what the rest of the data did to the sample meanwhile (negative: it generalizes to it). Polyak
    smoothed; a sample stays unscored (+inf, never dropped) until its second visit.
    """
    idx, values, fresh = state.visit(obs.index, torch.stack([obs.term, obs.loss], dim=1), epoch)
    change = values[:, 1] - state.aux[idx]
    old = state.score[idx]
    smoothed = torch.where(torch.isfinite(old), alpha * old + (1.0 - alpha) * change, change)
    state.score[idx] = torch.where(fresh, old, smoothed)
    state.aux[idx] = values[:, 1] - values[:, 0]
