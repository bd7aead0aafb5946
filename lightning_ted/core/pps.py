"""Exact-size sampling with inclusion probabilities proportional to a size measure (systematic PPS),
weighted by Horvitz-Thompson ``1 / pi_k`` so the weighted sum over the kept set is unbiased for the full sum.

Every function is vectorized (a sort, cumulative sums and a scalar bisection), O(N log N) at worst.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_ted.core.selection import Selection, lowest_k_mask

_MAX_ITERATIONS = 100  # safeguarded Newton steps on a piecewise-linear function: a handful in practice


def inclusion_probabilities(size: Tensor, n_keep: int, pi_min: float) -> Tensor:
    """``pi_k = clamp(c size_k, pi_min, 1)`` with ``c`` such that ``sum_k pi_k = n_keep`` (float64).

    ``size`` must be finite and ``> 0``; ``n_keep`` must lie in ``[N pi_min, N]`` (clamped to it).
    ``sum_k pi_k(c)`` is continuous, increasing and linear in ``c`` while no sample crosses the floor or
    the cap, so each step solves the current piece exactly; a bisection bracket guards the steps. Each
    step is a few O(N) passes, no sort.
    """
    n = size.numel()
    if not 0.0 < pi_min <= 1.0:
        raise ValueError(f"pi_min must be in (0, 1], got {pi_min!r}")
    if n == 0 or n_keep >= n or pi_min >= 1.0:
        return torch.ones(n, dtype=torch.float64)
    if n_keep <= n * pi_min * (1 + 1e-12):
        return torch.full((n,), pi_min, dtype=torch.float64)
    a = size.to(torch.float64)
    lo, hi = pi_min / float(a.max()), 1.0 / float(a.min())  # every sample at the floor / at the cap
    c, solved = min(max(n_keep / float(a.sum()), lo), hi), None
    for _ in range(_MAX_ITERATIONS):
        ca = a * c
        floor, cap = ca <= pi_min, ca >= 1.0
        pieces = (int(torch.count_nonzero(floor)), int(torch.count_nonzero(cap)))
        if pieces == solved:  # c solves the piece it lies on: exact
            break
        mid = float(torch.where(floor | cap, 0.0, a).sum())
        total = pieces[0] * pi_min + pieces[1] + c * mid
        if total < n_keep:
            lo = c
        else:
            hi = c
        step = (n_keep - pieces[0] * pi_min - pieces[1]) / mid if mid > 0 else math.nan
        c, solved = (step, pieces) if lo < step < hi else (math.sqrt(lo * hi), None)
    return (a * c).clamp_(pi_min, 1.0)


def systematic_sample(pi: Tensor, n_keep: int, generator: torch.Generator) -> Tensor:
    """Positions of exactly ``n_keep`` units (unordered), unit ``k`` included with probability ``pi_k <= 1``.

    Systematic sampling over a random order: the units are laid end to end on ``[0, n_keep)`` in a
    permutation drawn from ``generator``, each taking a segment of length ``pi_k``; the units whose
    segments hold one of the points ``u, u + 1, ..., u + n_keep - 1`` (``u`` uniform on ``[0, 1)``)
    are kept. ``sum pi`` is rescaled to ``n_keep`` (a float-rounding correction).
    """
    n = pi.numel()
    if n_keep >= n:
        return torch.arange(n)
    if n_keep <= 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.randperm(n, generator=generator)
    u = float(torch.rand(1, generator=generator, dtype=torch.float64))
    cum = pi.to(torch.float64)[order].cumsum_(0)
    cum.mul_(n_keep / float(cum[-1]))
    cum[-1] = n_keep
    ends = cum.sub_(u).floor_()  # index of the last point at or before each segment's end
    hit = torch.empty(n, dtype=torch.bool)
    hit[0] = ends[0] > math.floor(-u)
    torch.gt(ends[1:], ends[:-1], out=hit[1:])
    chosen = order[hit]
    missing = n_keep - chosen.numel()
    if missing:  # a segment rounded past length 1 (probability ~1e-12): take the likeliest units left
        taken = torch.zeros(n, dtype=torch.bool)
        taken[chosen] = True
        extra = lowest_k_mask(torch.where(taken, math.inf, -pi.to(torch.float64)), missing)
        chosen = torch.cat([chosen, torch.nonzero(extra).squeeze(1)])
    return chosen


def pps_selection(
    size: Tensor,
    forced: Tensor,
    n_keep: int,
    pi_min: float,
    generator: torch.Generator,
    prune_ratio: float = 0.0,
) -> Selection:
    """Keep the ``forced`` samples (weight 1) and ``n_keep - |forced|`` of the others by systematic PPS on
    ``size``, each weighted ``1 / pi_k`` (Horvitz-Thompson): ``E[sum_kept w_k g_k] = sum_k g_k``.

    ``pi_k >= pi_min`` bounds every weight by ``1 / pi_min``. If the forced samples leave fewer slots
    than the floor needs (``pi_min`` times the others), more are kept than ``n_keep``.
    """
    n = size.numel()
    pool = torch.nonzero(~forced).squeeze(1)
    n_pool = pool.numel()
    budget = min(n_pool, max(n_keep - (n - n_pool), math.ceil(n_pool * pi_min - 1e-9)))
    pi = inclusion_probabilities(size[pool], budget, pi_min)
    certain = pi >= 1.0  # capped: kept for sure, outside the systematic pass (no segment longer than 1)
    rest = ~certain
    rest_pi = pi[rest]
    chosen = systematic_sample(rest_pi, budget - int(torch.count_nonzero(certain)), generator)
    kept_pool, kept_pi = pool[rest][chosen], rest_pi[chosen]
    unit = torch.cat([torch.nonzero(forced).squeeze(1), pool[certain]])
    indices = torch.cat([unit, kept_pool])
    weights = torch.cat([torch.ones(unit.numel(), dtype=torch.float64), 1.0 / kept_pi])
    weights = weights.clamp_(max=1.0 / pi_min).to(torch.float32)  # 1 / pi_min itself, not an ulp above it
    return Selection(indices, unit.numel(), math.nan, n, prune_ratio, per_sample=weights)


def _order_key(x: Tensor) -> Tensor:
    """An int32 key with the order of the float32 values ``x`` (integer sorts are radix sorts: fast)."""
    bits = x.to(torch.float32).contiguous().view(torch.int32)
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits)


def positive_size(score: Tensor, transform: str) -> Tensor:
    """A size measure ``> 0`` from finite scores: ``"value"``: ``max(score, 0)``; ``"rank"``: the score's
    rank ``1..n`` over ``n`` (ties by index). A floor of ``1e-6`` of the largest size keeps every size
    positive, so samples at 0 sit at ``pi_min`` unless the budget needs them."""
    if transform == "rank":
        size = torch.empty(score.numel(), dtype=torch.float64)
        order = torch.sort(_order_key(score), stable=True).indices
        size[order] = torch.arange(1, score.numel() + 1, dtype=torch.float64)
        return size / max(1, score.numel())
    size = score.to(torch.float64).clamp(min=0.0)
    top = float(size.max()) if size.numel() else 0.0
    return size + (1e-6 * top if top > 0 else 1.0)


def within_cohorts(size: Tensor, cohort: Tensor, transform: str, score: Tensor) -> Tensor:
    """Sizes comparable only inside a cohort (the epoch a score was measured in): ``"rank"`` becomes the
    rank inside the cohort over its size, ``"value"`` the size over the cohort's mean size."""
    cohort = cohort.to(torch.int64)
    cohort = cohort - cohort.min() if cohort.numel() else cohort
    counts = torch.bincount(cohort).to(torch.float64)
    if transform == "rank":
        key = (cohort << 32) + (_order_key(score).to(torch.int64) + (1 << 31))  # by (cohort, score)
        order = torch.sort(key, stable=True).indices
        starts = counts.cumsum(0) - counts
        rank = torch.empty(score.numel(), dtype=torch.float64)
        rank[order] = torch.arange(score.numel(), dtype=torch.float64) - starts[cohort[order]] + 1.0
        return rank / counts[cohort]
    sums = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, cohort, size.to(torch.float64))
    return size / (sums / counts.clamp_min(1.0))[cohort]
