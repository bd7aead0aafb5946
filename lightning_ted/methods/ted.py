"""TED pruning (Internal Generalization Distance, arXiv 2405.03228), as DESIGN.md section 2 reads it.

Score: Polyak average of the mask Taylor term ``T_k = eta <g_k, gbar>`` with head gradients. Removing k
raises the full-data loss by about ``T_k``, so the lowest-scoring samples are the ones whose absence the
rest of the data covers. Rule: the ``ceil(p N / q)`` lowest scores are candidates, ``round(p N)`` of them
are dropped at random and the kept candidates weigh ``1 / (1 - q')``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_ted.methods.base import PruningMethod
from lightning_ted.selection import Selection, random_drop_selection, stale_protected_selection
from lightning_ted.state import Observations, ScoreState
from lightning_ted.taylor import SCORE_VARIANTS

REFERENCES = ("batch", "ema", "pruned", "all")
FORWARD_REFERENCES = ("pruned", "all")  # need the per-epoch forward-only pass over pruned samples
SCORES = SCORE_VARIANTS


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
            ``cos(g_k, gbar)``, alignment alone, blind to the gradient's size.
        max_staleness: ``K``: a sample left out of training for ``K - 1`` epochs in a row is no longer a
            candidate (its score was measured on an older model), so it is trained and re-scored at the
            latest ``K`` epochs after its last visit, whenever the stale samples fit in the kept set
            (otherwise the stalest go first): on fixed scores the longest gap between two trainings is
            ``max(K, ceil(1 / (1 - p)) + 1)`` epochs, K up to p = 0.65 with K = 4 (a kept share below 1/K
            cannot rotate faster). Kept stale samples weigh like the kept candidates. The
            default ``K = 4`` tied the best variant on validation in ``experiments/ablate_ted.py``
            (76.53 vs 76.55 mean accuracy) and guarantees coverage; ``None`` disables the rule.
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
        self.reference_size = int(reference_size)
        self.score = score
        self.max_staleness = max_staleness
        self.alpha = float(alpha)
        self.q = float(q)
        self.reference = reference
        self.ema_decay = float(ema_decay)

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        if self.max_staleness is None:
            return random_drop_selection(state.score, prune_ratio, self.q, generator)
        epoch = int(state.last_epoch.max()) + 1  # the epoch being selected follows the last observed one
        age = epoch - state.last_epoch
        return stale_protected_selection(state.score, age, self.max_staleness, prune_ratio, self.q, generator)

    def observation_value(self, obs: Observations) -> Tensor:
        return obs.term
