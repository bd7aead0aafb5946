"""TED's per-visit score values from one step's head capture, and the internal-generalization update.

Every reading is a term of the first-order effect of removing sample k (README, "How TED works"):
``igd`` ``<g_k, gbar>`` against a reference that holds k's own share (``w_k |g_k|^2 / B`` for the batch);
``cross`` without that share; ``horizon`` the cross term plus k's own share of the full-data loss,
``|g_k|^2 / N``; ``ig`` the loss change the other samples caused between two visits (measured, not
predicted); ``ratio`` and ``cosine`` scale-free forms of the cross term; ``grad_norm`` ``|g_k|``, the
self term's root (the callback reads the ``"grand"`` head statistic for it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_ted.core.state import Column, Observations, ScoreState
from lightning_ted.methods.taylor import grad_sq_norms, score_values, self_terms

#: every reading the research class accepts; :class:`~lightning_ted.methods.TED` accepts a measured few.
ALL_SCORES = ("igd", "cross", "ratio", "cosine", "grad_norm", "horizon", "ig")
#: readings without the learning-rate factor (no loss units).
SCALE_FREE = ("ratio", "cosine")


def head_score(
    h: Tensor,
    delta: Tensor,
    weights: Tensor,
    grad_w: Tensor,
    grad_b: Tensor | None,
    score: str,
    num_samples: int,
    self_share: float = 1.0,
) -> Tensor:
    """The per-visit value of ``score`` (before the learning-rate factor) against the reference ``(G, gb)``.

    ``self_share``: k's share of the reference (1 for the batch, 0 for the pruned set, which excludes k).
    """
    if score == "ig":  # the own step's first-order decrease of the loss
        return self_terms(h, delta, weights, grad_b is not None)
    values = score_values(h, delta, weights, grad_w, grad_b, "cross" if score == "horizon" else score, self_share)
    if score == "horizon":
        values = values + grad_sq_norms(h, delta, grad_b is not None) / num_samples
    return values


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
