"""Exact-size sampling with inclusion probabilities proportional to a size measure (systematic PPS),
weighted by Horvitz-Thompson ``1 / pi_k`` so the weighted sum over the kept set is unbiased for the full sum.

Every function is vectorized (a sort, cumulative sums and a scalar bisection), O(N log N) at worst.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_ted.selection import Selection, lowest_k_mask

_BISECTIONS = 200  # on log(c): the bracket spans < 2^11 octaves, so this reaches double precision


def inclusion_probabilities(size: Tensor, n_keep: int, pi_min: float) -> Tensor:
    """``pi_k = clamp(c size_k, pi_min, 1)`` with ``c`` such that ``sum_k pi_k = n_keep`` (float64).

    ``size`` must be finite and ``> 0``; ``n_keep`` must lie in ``[N pi_min, N]`` (clamped to it). ``c``
    is found on the sorted sizes: ``sum_k pi_k(c)`` is continuous and increasing, piecewise linear in
    ``c``; a bisection finds the piece that holds ``n_keep`` and ``c`` is solved on it exactly.
    """
    n = size.numel()
    if not 0.0 < pi_min <= 1.0:
        raise ValueError(f"pi_min must be in (0, 1], got {pi_min!r}")
    if n == 0 or n_keep >= n or pi_min >= 1.0:
        return torch.ones(n, dtype=torch.float64)
    if n_keep <= n * pi_min * (1 + 1e-12):
        return torch.full((n,), pi_min, dtype=torch.float64)
    s = size.to(torch.float64).sort().values
    prefix = torch.cat([s.new_zeros(1), s.cumsum(0)])

    def pieces(c: float) -> tuple[int, int, float]:
        """(#at floor, #at cap, sum of the sizes in between) at scale ``c``."""
        bounds = s.new_tensor([pi_min / c, 1.0 / c])
        lo = int(torch.searchsorted(s, bounds[:1], right=True))
        hi = int(torch.searchsorted(s, bounds[1:], right=False))
        return lo, n - hi, float(prefix[hi] - prefix[lo])

    def total(c: float) -> float:
        lo, up, mid = pieces(c)
        return lo * pi_min + up + c * mid

    lo_c, hi_c = math.log(pi_min / float(s[-1])), math.log(1.0 / float(s[0]))  # all at floor / all at cap
    for _ in range(_BISECTIONS):
        mid_c = 0.5 * (lo_c + hi_c)
        if total(math.exp(mid_c)) < n_keep:
            lo_c = mid_c
        else:
            hi_c = mid_c
        if hi_c - lo_c < 1e-15:
            break
    c = math.exp(hi_c)
    n_floor, n_cap, mid = pieces(c)
    if mid > 0:  # exact on the piece: n_keep = n_floor pi_min + n_cap + c mid
        c = (n_keep - n_floor * pi_min - n_cap) / mid
    return (c * size.to(torch.float64)).clamp_(pi_min, 1.0)


def systematic_sample(pi: Tensor, n_keep: int, generator: torch.Generator) -> Tensor:
    """Boolean mask of exactly ``n_keep`` units, unit ``k`` included with probability ``pi_k``.

    Systematic sampling over a random order: the units are laid end to end on ``[0, n_keep)`` in a
    permutation drawn from ``generator``, each taking a segment of length ``pi_k``; the units whose
    segments hold one of the points ``u, u + 1, ..., u + n_keep - 1`` (``u`` uniform on ``[0, 1)``)
    are kept. ``sum pi`` is rescaled to ``n_keep`` (a float-rounding correction).
    """
    n = pi.numel()
    if n_keep >= n:
        return torch.ones(n, dtype=torch.bool)
    if n_keep <= 0:
        return torch.zeros(n, dtype=torch.bool)
    order = torch.randperm(n, generator=generator)
    u = float(torch.rand(1, generator=generator, dtype=torch.float64))
    cum = pi.to(torch.float64)[order].cumsum(0)
    cum.mul_(n_keep / float(cum[-1]))
    cum[-1] = n_keep
    ends = torch.floor(cum - u)
    starts = torch.cat([ends.new_full((1,), math.floor(-u)), ends[:-1]])
    hit = torch.zeros(n, dtype=torch.bool)
    hit[order] = ends > starts
    missing = n_keep - int(torch.count_nonzero(hit))
    if missing:  # a segment rounded past length 1 (probability ~1e-12): take the likeliest units left
        hit |= lowest_k_mask(torch.where(hit, math.inf, -pi.to(torch.float64)), missing)
    return hit


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
    kept_forced = torch.nonzero(forced).squeeze(1)
    n_pool = pool.numel()
    budget = min(n_pool, max(n_keep - kept_forced.numel(), math.ceil(n_pool * pi_min - 1e-9)))
    pi = inclusion_probabilities(size[pool], budget, pi_min)
    hit = systematic_sample(pi, budget, generator)
    kept_pool, kept_pi = pool[hit], pi[hit]
    indices = torch.cat([kept_forced, kept_pool])
    weights = torch.cat([torch.ones(kept_forced.numel(), dtype=torch.float64), 1.0 / kept_pi])
    weights = weights.clamp_(max=1.0 / pi_min).to(torch.float32)  # 1 / pi_min itself, not an ulp above it
    return Selection(indices, kept_forced.numel(), math.nan, n, prune_ratio, per_sample=weights)


def positive_size(score: Tensor, transform: str) -> Tensor:
    """A size measure ``> 0`` from finite scores: ``"value"``: ``max(score, 0)``; ``"rank"``: the score's
    rank ``1..n`` over ``n`` (ties by index). A floor of ``1e-6`` of the largest size keeps every size
    positive, so samples at 0 sit at ``pi_min`` unless the budget needs them."""
    if transform == "rank":
        size = torch.empty(score.numel(), dtype=torch.float64)
        size[torch.argsort(score, stable=True)] = torch.arange(1, score.numel() + 1, dtype=torch.float64)
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
        by_score = torch.argsort(score, stable=True)
        order = by_score[torch.argsort(cohort[by_score], stable=True)]  # by (cohort, score)
        starts = counts.cumsum(0) - counts
        rank = torch.empty(score.numel(), dtype=torch.float64)
        rank[order] = torch.arange(score.numel(), dtype=torch.float64) - starts[cohort[order]] + 1.0
        return rank / counts[cohort]
    sums = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, cohort, size.to(torch.float64))
    return size / (sums / counts.clamp_min(1.0))[cohort]
