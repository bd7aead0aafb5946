"""TED's per-visit score values from one step's head capture: the one list of its readings.

Every reading is a term of the first-order effect of removing sample k (docs, "How TED works"):
``igd`` ``<g_k, gbar>`` against a reference that holds k's own share (``w_k |g_k|^2 / B`` for the batch);
``cross`` without that share; ``horizon`` the cross term plus k's own share of the full-data loss,
``|g_k|^2 / N``; ``ig`` the loss change the other samples caused between two visits (measured, not
predicted; its update is research-only, in ``research/ted_variants.py``); ``ratio`` and ``cosine``
scale-free forms of the cross term; ``grad_norm`` ``|g_k|``, the self term's root (the callback reads the
``"grand"`` head statistic for it).
"""

from __future__ import annotations

from torch import Tensor

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
