"""Choosing the kept samples of an epoch, shared by every pruning method.

A :class:`Selection` is the kept index set plus its weights, stored compactly: the first
``num_unit_weight`` kept indices have weight 1, the rest (kept candidates of a random drop) share one
weight ``1 / (1 - q')``. That keeps the per-epoch selection at 8 bytes per kept sample; rules whose
weights differ per sample (Horvitz-Thompson, :mod:`lightning_ted.core.pps`) add one float32 per kept sample.
Every reweighting rule takes a ``max_weight`` bound: the kept set grows rather than a weight exceeding it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

_SEED_STRIDE = 1_000_003  # keeps (seed, epoch) -> generator seed one-to-one for epochs < 10^6


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded by ``(seed, epoch, stream)``: identical on every rank and after a resume."""
    g = torch.Generator()
    g.manual_seed((int(seed) * _SEED_STRIDE + int(epoch)) * 8 + int(stream))
    return g


def min_kept(num_samples: int, max_weight: float) -> int:
    """Fewest samples an epoch may keep when kept samples weigh ``N / kept``: ``ceil(N / max_weight)``."""
    if max_weight < 1.0:
        raise ValueError(f"max_weight must be >= 1 (a kept sample weighs at least 1), got {max_weight!r}")
    return 0 if math.isinf(max_weight) else min(num_samples, math.ceil(num_samples / max_weight))


def bounded_drop(num_samples: int, prune_ratio: float, max_weight: float = math.inf) -> int:
    """The schedule's drop count ``round(p N)``, lowered so at least ``ceil(N / max_weight)`` samples stay."""
    return max(0, min(int(round(prune_ratio * num_samples)), num_samples - min_kept(num_samples, max_weight)))


def min_pool(n_drop: int, max_weight: float) -> int:
    """Smallest pool ``P`` from which ``n_drop`` can be dropped with its kept members weighing
    ``P / (P - n_drop) <= max_weight``, i.e. ``P - ceil(P / max_weight) >= n_drop``."""
    if n_drop <= 0 or math.isinf(max_weight):
        return max(n_drop, 0)
    if max_weight <= 1.0:
        raise ValueError(f"no sample can be dropped with max_weight={max_weight!r}")
    pool = math.ceil(n_drop * max_weight / (max_weight - 1.0))
    while pool - math.ceil(pool / max_weight) < n_drop:  # float rounding: at most a step or two
        pool += 1
    while pool > n_drop and (pool - 1) - math.ceil((pool - 1) / max_weight) >= n_drop:
        pool -= 1
    return pool


@dataclass
class Selection:
    """Kept samples of one epoch: ``indices[:num_unit_weight]`` weigh 1, the rest weigh ``weight``.

    Args:
        indices: the kept dataset indices (int64), the ``num_unit_weight`` of weight 1 first.
        num_unit_weight: how many leading ``indices`` weigh 1.
        weight: the weight shared by the others (a random drop's kept candidates: ``1 / (1 - q')``).
        num_samples: the dataset's size ``N``.
        target_ratio: the pruned fraction the schedule asked for (logged as ``prune/target_ratio``).
        per_sample: every kept sample's weight, aligned with ``indices``; ``weight`` is then NaN, so code that reads
            the shared weight of a per-sample selection fails loudly: read :meth:`weight_at` or :attr:`weights`.

    Examples:
        >>> import torch
        >>> sel = Selection(torch.tensor([0, 2, 3, 5]), num_unit_weight=2, weight=2.0, num_samples=6)
        >>> len(sel), sel.weights.tolist(), sel.mean_weight, round(sel.actual_ratio, 2)
        (4, [1.0, 1.0, 2.0, 2.0], 1.5, 0.33)
    """

    indices: Tensor
    num_unit_weight: int
    weight: float
    num_samples: int
    target_ratio: float = 0.0
    per_sample: Tensor | None = None

    @classmethod
    def everything(cls, num_samples: int) -> Selection:
        return cls(torch.arange(num_samples), num_samples, 1.0, num_samples)

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def weights(self) -> Tensor:
        """Weights of the kept samples, aligned with ``indices`` (materialized on demand)."""
        if self.per_sample is not None:
            return self.per_sample.clone()
        w = torch.ones(len(self), dtype=torch.float32)
        w[self.num_unit_weight :] = self.weight
        return w

    def weight_at(self, positions: Tensor) -> Tensor:
        """Weights of the kept samples at ``positions`` (positions into ``indices``)."""
        if self.per_sample is not None:
            return self.per_sample[positions]
        return torch.where(positions < self.num_unit_weight, 1.0, self.weight).to(torch.float32)

    @property
    def mean_weight(self) -> float:
        """Mean weight of the kept samples (1 for an empty selection): ``N / kept`` for unbiased weights."""
        n = len(self)
        if n == 0:
            return 1.0
        if self.per_sample is not None:
            return float(self.per_sample.mean())
        return (self.num_unit_weight + (n - self.num_unit_weight) * self.weight) / n

    @property
    def max_weight(self) -> float:
        """The largest weight of any kept sample (1 for an empty selection)."""
        if len(self) == 0:
            return 1.0
        if self.per_sample is not None:
            return float(self.per_sample.max())
        return max(1.0 if self.num_unit_weight else 0.0, self.weight if self.num_unit_weight < len(self) else 0.0)

    @property
    def actual_ratio(self) -> float:
        return 1.0 - len(self) / self.num_samples


_EXACT_BELOW = 1 << 22  # below this size plain kthvalue is fast enough
_SAMPLE = 1 << 20


def kth_smallest(x: Tensor, k: int) -> Tensor:
    """The ``k``-th smallest entry of a 1-D tensor (1-based), exactly, in a few linear passes.

    For large inputs a strided sample brackets the answer between two sample order statistics; one
    pass counts what lies below the bracket and ``kthvalue`` runs only on the entries inside it. The
    bracket is verified, and a full ``kthvalue`` is the fallback, so the result is always exact.
    """
    return _kth_and_band(x, k)[0]


def _kth_and_band(x: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
    """``kth_smallest`` and the sorted positions of the bracket it searched (they hold every tie of it).

    The positions are ``None`` when no bracket was used (small input or fallback).
    """
    n = x.numel()
    if n <= _EXACT_BELOW:
        return torch.kthvalue(x, k).values, None
    sample = x[:: n // _SAMPLE].sort().values
    m = sample.numel()
    pos, margin = k / n * m, 6.0 * math.sqrt(m) + 32
    lo_i, hi_i = int(pos - margin), int(pos + margin)
    lo = sample[lo_i] if lo_i >= 0 else x.new_tensor(-math.inf)
    hi = sample[hi_i] if hi_i < m else x.new_tensor(math.inf)
    at_least_lo = x >= lo
    below = n - int(torch.count_nonzero(at_least_lo))
    band_pos = torch.nonzero(at_least_lo.logical_and_(x <= hi)).squeeze(1)
    if below < k <= below + band_pos.numel():
        return torch.kthvalue(x[band_pos], k - below).values, band_pos
    return torch.kthvalue(x, k).values, None


def lowest_k_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly ``k`` lowest entries (ties broken by index), in O(N) passes."""
    return _lowest_k(scores, k)[0]


def _lowest_k(scores: Tensor, k: int) -> tuple[Tensor, float]:
    """``lowest_k_mask`` and the k-th smallest value (``-inf`` for k <= 0, the maximum for k >= N)."""
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool), -math.inf
    if k >= n:
        return torch.ones(n, dtype=torch.bool), float(scores.max())
    threshold, band_pos = _kth_and_band(scores, k)
    mask = scores <= threshold
    extra = int(torch.count_nonzero(mask)) - k
    if extra > 0:  # more ties at the threshold than needed: keep the first ones by index
        if band_pos is None:
            ties = torch.nonzero(scores == threshold).squeeze(1)
        else:  # every tie lies inside the searched bracket, whose positions are sorted
            ties = band_pos[scores[band_pos] == threshold]
        mask[ties[ties.numel() - extra :]] = False
    return mask, float(threshold)


def stale_protected_selection(
    scores: Tensor,
    age: Tensor,
    max_age: int,
    prune_ratio: float,
    q: float,
    generator: torch.Generator,
    max_weight: float = math.inf,
) -> Selection:
    """``random_drop_selection`` in which samples of ``age >= max_age`` epochs are never dropped, if possible.

    Stale samples are taken out of the candidates (as if unscored), so each is trained, and re-scored,
    at most ``max_age`` epochs after its last visit. If the fresh scored samples are fewer than the
    drop count, the kept count still follows the schedule: every fresh sample and the least stale of
    the others are dropped, so the stalest are the ones trained. Kept sets then rotate through the
    data like RS2's, each sample kept in a share ``1 - p`` of such epochs, so every kept sample weighs
    ``N / kept``: the epoch's total weight stays ``N`` (weight 1 would shrink the step by ``1 - p``).
    No weight exceeds ``max_weight``: the drop count is capped and the candidate pool widened for that.
    """
    stale = (age >= max_age) & torch.isfinite(scores)
    if not bool(stale.any()):
        return random_drop_selection(scores, prune_ratio, q, generator, max_weight)
    n = scores.numel()
    n_drop = bounded_drop(n, prune_ratio, max_weight)
    n_stale = int(torch.count_nonzero(stale))
    n_fresh = int(torch.count_nonzero(torch.isfinite(scores))) - n_stale
    if n_drop <= n_fresh:
        sel = _random_drop(scores.masked_fill(stale, math.inf), n_drop, q, generator, max_weight, n_stale)
        sel.target_ratio = prune_ratio
        return _stale_into_pool(sel, stale)
    fresh_finite = torch.isfinite(scores) & ~stale
    top = float(scores[fresh_finite].max()) if n_fresh else 0.0
    aged = (abs(top) + 1.0) + (age - max_age).to(torch.float32)  # above every fresh score, stalest highest
    hard = _random_drop(torch.where(stale, aged, scores), n_drop, 1.0, generator)
    return Selection(hard.indices, 0, n / max(1, len(hard)), n, prune_ratio)


def _stale_into_pool(sel: Selection, stale: Tensor) -> Selection:
    """Weigh the kept stale samples like the kept candidates: both are the pool the rotation draws from.

    Left at weight 1 beside the candidates, a large stale wave leaves few kept candidates to carry the
    whole pool's weight (22x at s = 0.7 on Fashion-MNIST, which cost 1.9 points); as members of the pool
    every kept member weighs ``pool / kept members``, and the total weight stays ``N``.
    """
    if len(sel) == sel.num_samples or sel.num_unit_weight == 0:
        return sel
    unit = sel.indices[: sel.num_unit_weight]
    unit_stale = stale[unit]
    n_stale = int(torch.count_nonzero(unit_stale))
    n_kept_cand = len(sel) - sel.num_unit_weight
    pool = sel.num_samples - (sel.num_unit_weight - n_stale)  # every sample that is not a plain keep
    indices = torch.cat([unit[~unit_stale], unit[unit_stale], sel.indices[sel.num_unit_weight :]])
    weight = pool / (n_stale + n_kept_cand)
    return Selection(indices, sel.num_unit_weight - n_stale, weight, sel.num_samples, sel.target_ratio)


def random_drop_selection(
    scores: Tensor, prune_ratio: float, q: float, generator: torch.Generator, max_weight: float = math.inf
) -> Selection:
    """Drop ``d = round(p N)`` samples uniformly at random among the ``ceil(d / q)`` lowest-scoring ones.

    The candidate count is taken from the integer drop count ``d`` rather than from ``p N`` (DESIGN.md
    writes ``ceil(p N / q)``): the dropped share of the candidates then stays at ``q`` and float noise in
    ``p N`` (0.3 * 100 = 30.000000000000004) cannot add a candidate. Unscored samples (``+inf``) are
    never candidates. Kept candidates are weighted ``1 / (1 - q')`` with ``q' = dropped / candidates``,
    so the expected weighted gradient over the kept set equals the full-data gradient.

    ``max_weight`` bounds every weight: ``d`` is capped so at least ``ceil(N / max_weight)`` samples stay
    and, for ``q < 1``, the candidates widen until ``1 / (1 - q') <= max_weight``.
    """
    sel = _random_drop(scores, bounded_drop(scores.numel(), prune_ratio, max_weight), q, generator, max_weight)
    sel.target_ratio = prune_ratio
    return sel


def _random_drop(
    scores: Tensor, n_drop: int, q: float, generator: torch.Generator, max_weight: float = math.inf, extra_pool: int = 0
) -> Selection:
    """``random_drop_selection`` for a given drop count. ``extra_pool`` samples outside the candidates
    (kept stale ones) share the kept candidates' weight, so the bound applies to the pool they form."""
    n = scores.numel()
    soft = q < 1.0 or extra_pool > 0
    n_cand = min(n, math.ceil(n_drop / q)) if n_drop > 0 else 0
    if soft and n_drop > 0:
        n_cand = min(n, max(n_cand, min_pool(n_drop, max_weight) - extra_pool))
    cand_mask, threshold = _lowest_k(scores, n_cand)
    if math.isinf(threshold) and threshold > 0:  # unscored (+inf) samples reached the candidates
        n_cand = min(n_cand, n - int(torch.count_nonzero(torch.isposinf(scores))))
        cand_mask, _ = _lowest_k(scores, n_cand)
    n_drop = min(n_drop, n_cand)
    if soft and not math.isinf(max_weight):  # fewer candidates than the bound needs: drop fewer
        pool = n_cand + extra_pool
        n_drop = min(n_drop, pool - min_kept(pool, max_weight))
    if n_drop == 0:
        return Selection.everything(n)
    # exactly n_drop of the candidates, uniformly: the n_drop smallest of i.i.d. uniform keys, one key
    # per sample so no candidate index list is needed; non-candidates get a key above every uniform one
    keys = torch.rand(n, generator=generator)
    weight = n_cand / (n_cand - n_drop) if n_drop < n_cand else 1.0  # correctly rounded: never above the bound
    if n_cand == n:  # every sample is a candidate
        return Selection(torch.nonzero(lowest_k_mask(keys, n_drop).logical_not_()).squeeze(1), 0, weight, n)
    plain_mask = cand_mask.logical_not_()
    keys.masked_fill_(plain_mask, 2.0)
    kept_cand_mask = lowest_k_mask(keys, n_drop).logical_or_(plain_mask).logical_not_()  # candidates not dropped
    del keys
    n_plain = n - n_cand
    indices = torch.empty(n_plain + n_cand - n_drop, dtype=torch.int64)  # filled in place: no concatenation copy
    torch.nonzero(plain_mask, out=indices[:n_plain].unsqueeze(1))
    torch.nonzero(kept_cand_mask, out=indices[n_plain:].unsqueeze(1))
    return Selection(indices, n_plain, weight, n)
