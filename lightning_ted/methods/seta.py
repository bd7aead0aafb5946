"""``seta``: SeTa (Zhou et al., CVPR 2025): random pruning, loss groups by 1-D k-means, a sliding window."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_ted.core.selection import Selection
from lightning_ted.core.state import ScoreState
from lightning_ted.methods.base import PruningMethod


class SeTa(PruningMethod):
    """SeTa (Zhou et al., CVPR 2025, "Scale Efficient Training for Large Datasets", arXiv 2503.13385).

    Rule, each epoch ``t`` (0-based), with ``r`` = the schedule's prune ratio of the epoch:

    1. score = each sample's latest loss (overwritten at every visit, no EMA); an unseen sample counts
       as ``initial_score`` (SeTa's 3.0: above a trained cross-entropy, so it sits in a hard group).
    2. random stage: a fresh uniform subset of ``int((1 - r) N)`` samples from the whole data (computed
       without float noise; at least 1).
    3. grouping: the subset's scores in ``num_groups = K`` groups by 1-D k-means, sorted easy -> hard by
       mean (unequal sizes). SeTa runs sklearn's KMeans (k-means++ start, local optimum); here
       :func:`kmeans_1d`: in 1-D every group is a contiguous run of the sorted scores, so an exact
       dynamic program picks the best grouping on at most 1024 runs of them and Lloyd iterations on
       all scores refine it: the exact optimum up to 512 scores, beyond that a local optimum no worse
       than sklearn's on the loss shapes tried; deterministic, O(M log M) for the sort plus K min-plus
       steps on a (runs x runs) matrix, no random restarts. An equal-count (quantile) start alone was rejected:
       Lloyd then splits a large easy cluster and merges small hard ones. All scores equal (nothing
       seen yet): K equal-count groups in random order, like SeTa's chunks.
    4. sliding window: ``w = round(K * window_scale)`` (Python's round, half to even, as SeTa:
       K = 5, 0.9 gives w = 4) groups starting at group ``t mod (K - w + 1)``: it moves one group
       harder per epoch and wraps around; ``t = 0`` keeps every group. Kept = the subset's samples in
       those groups.
    5. partial annealing: the epochs with ``t + 1 > delta * max_epochs`` keep the random subset of step 2
       without grouping or window. It needs ``max_epochs``, taken from the Trainer at setup (outside a
       Trainer, left ``None``, there is no partial anneal; the schedule's own ``anneal`` epochs, with
       r = 0, then train on all data).

    Mapping onto this package: SeTa's ``prune_ratio`` is the schedule's ratio of the epoch;
    SeTa's own setting is ``ConstantSchedule(r, warmup_epochs=0, anneal=0)`` with ``SeTa()``.
    ``t`` is the epoch number, read from the state (the epoch after the last
    observed one), as SeTa prunes from the first epoch. The kept count depends on the groups, so it is
    at most ``int((1 - r) N)`` and the achieved saved fraction is above ``r``: report it.

    Args:
        num_groups: K (SeTa's CIFAR setting 5; its class default is 10).
        window_scale: window width as a share of K, in (0, 1] (CIFAR 0.9, class default 0.5).
        delta: share of ``max_epochs`` trained with the window before the partial anneal.
        max_epochs: run length; left ``None`` it is taken from ``Trainer(max_epochs)`` at setup (a value
            that disagrees with the Trainer is refused).
        initial_score: score of samples not seen yet.
        reweight: SeTa weighs every kept sample 1 (the default); ``True`` weighs them ``1 / (1 - r)``,
            undoing only the random stage's shrink (the window is a curriculum, not a sample), so a
            weight never exceeds ``1 / (1 - r)``.
        kmeans_iters: cap on Lloyd iterations.

    Raises:
        ValueError: if ``num_groups`` is not a positive integer, ``window_scale`` is not in ``(0, 1]`` or gives a
            window of 0 groups, ``delta`` is not in ``(0, 1]``, ``max_epochs`` is neither ``None`` nor a positive
            integer, ``initial_score`` is not finite, or ``kmeans_iters`` is below 1.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import ScoreState
        >>> method, state = SeTa(), ScoreState(100)  # K = 5 groups, a window of round(5 * 0.9) = 4
        >>> len(method.select(state, 0.3, torch.Generator().manual_seed(0)))  # epoch 0: the random stage alone
        70
        >>> state.score = torch.arange(100.0) / 100
        >>> state.last_epoch[:] = 0  # epoch 0 trained: the next one is epoch 1
        >>> list(method.window_groups(1))  # the window moved one group harder: the easiest group is left out
        [1, 2, 3, 4]
        >>> len(method.select(state, 0.3, torch.Generator().manual_seed(0)))  # 70 drawn, fewer kept
        56
    """

    name = "seta"
    prunes_at_zero_ratio = True  # at r = 0 the window still keeps only its groups of the whole data
    exact_kept_count = False

    def __init__(
        self,
        num_groups: int = 5,
        window_scale: float = 0.9,
        delta: float = 0.875,
        max_epochs: int | None = None,
        initial_score: float = 3.0,
        reweight: bool = False,
        kmeans_iters: int = 300,
    ) -> None:
        if int(num_groups) != num_groups or num_groups < 1:
            raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}")
        if not 0.0 < window_scale <= 1.0:
            raise ValueError(f"window_scale must be in (0, 1] (window width / num_groups), got {window_scale!r}")
        if round(num_groups * window_scale) < 1:
            raise ValueError(
                f"window_scale={window_scale!r} with num_groups={num_groups} gives a window of "
                f"round({num_groups} * {window_scale}) = 0 groups; raise window_scale or num_groups."
            )
        if not 0.0 < delta <= 1.0:
            raise ValueError(f"delta must be in (0, 1] (share of epochs before the partial anneal), got {delta!r}")
        if max_epochs is not None and (int(max_epochs) != max_epochs or max_epochs < 1):
            raise ValueError(f"max_epochs must be a positive integer (the Trainer's) or None, got {max_epochs!r}")
        if not math.isfinite(initial_score):
            raise ValueError(f"initial_score must be finite (a loss value), got {initial_score!r}")
        if kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be >= 1, got {kmeans_iters!r}")
        self.num_groups = int(num_groups)
        self.window_scale = float(window_scale)
        self.window = round(self.num_groups * self.window_scale)  # Python round: half to even, as SeTa
        self.delta = float(delta)
        self.max_epochs = None if max_epochs is None else int(max_epochs)
        self.pinned = max_epochs is not None  # the user fixed the run length: a Trainer must agree with it
        self.initial_score = float(initial_score)
        self.reweight = bool(reweight)
        self.kmeans_iters = int(kmeans_iters)

    def bind(self, max_epochs: int | None) -> None:
        """Take the run length from each fit's Trainer when none was given (a new fit, or one continued
        with a larger ``max_epochs``, follows it as the schedules do); refuse one that disagrees with a
        length the user gave."""
        if max_epochs is None:
            return
        if not self.pinned:
            self.max_epochs = int(max_epochs)
        elif self.max_epochs != max_epochs:
            raise ValueError(
                f"SeTa(max_epochs={self.max_epochs}) but the Trainer runs max_epochs={max_epochs}; leave SeTa's "
                "max_epochs unset (it is taken from the Trainer) or make the two equal."
            )

    def window_groups(self, t: int) -> range:
        """Group indices (0 = easiest) the window keeps at epoch ``t``."""
        if t == 0:
            return range(self.num_groups)
        start = t % (self.num_groups - self.window + 1)
        return range(start, start + self.window)

    def annealing(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) is one of the partial-anneal epochs."""
        return self.max_epochs is not None and epoch + 1 > self.delta * self.max_epochs

    def expected_kept(self, num_samples: int, prune_ratio: float, epoch: int) -> int:
        """Upper bound: the random stage's count; the window keeps a score-dependent part of it."""
        return _random_stage_count(num_samples, prune_ratio)

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        if not 0.0 <= prune_ratio < 1.0:
            raise ValueError(f"SeTa's prune ratio r must be in [0, 1), got {prune_ratio!r}")
        n = state.num_samples
        epoch = int(state.last_epoch.max()) + 1  # the epoch being selected follows the last observed one
        if self.max_epochs is not None and epoch >= self.max_epochs:
            raise ValueError(
                f"SeTa(max_epochs={self.max_epochs}) is selecting epoch {epoch}: the Trainer runs longer; "
                "set SeTa's max_epochs to Trainer(max_epochs) so the partial anneal falls on the last epochs."
            )
        subset = torch.randperm(n, generator=generator)[: _random_stage_count(n, prune_ratio)]
        kept = subset
        if not self.annealing(epoch) and epoch > 0 and subset.numel() > self.num_groups:
            score = state.score[subset]
            score = torch.where(torch.isposinf(score), self.initial_score, score)
            values, order = torch.sort(score, stable=True)  # ties keep the random subset order
            bounds = kmeans_1d(values, self.num_groups, self.kmeans_iters)
            groups = self.window_groups(epoch)
            kept = subset[order[int(bounds[groups.start]) : int(bounds[groups.stop])]]
            if kept.numel() == 0:  # only empty groups in the window: one random sample, as SeTa
                kept = subset[:1]
        kept = kept.sort().values
        if self.reweight:
            return Selection(kept, 0, 1.0 / (1.0 - prune_ratio), n, prune_ratio)
        return Selection(kept, kept.numel(), 1.0, n, prune_ratio)


def _random_stage_count(n: int, prune_ratio: float) -> int:
    """``int((1 - r) n)``, at least 1, without float noise (``(1 - 0.55) * 100`` is 44.999...)."""
    return max(1, n - math.ceil(round(prune_ratio * n, 9)))


def kmeans_1d(values: Tensor, k: int, max_iter: int = 300, bins: int = 512) -> Tensor:
    """1-D k-means of ascending ``values``: ``k + 1`` boundaries, group ``g`` = ``values[b[g] : b[g + 1]]``.

    In 1-D every k-means group is a contiguous run of the sorted values. The values are cut into at
    most ``2 * bins`` runs (``bins`` equal-count ones, so dense regions are resolved, and ``bins``
    equal-width ones, so gaps between clusters are; a run never splits equal values), the optimal
    grouping of those runs is found exactly by dynamic programming over prefix sums (``k`` vectorized
    min-plus steps), and Lloyd iterations on all values refine it (each: group means, then splits at the
    midpoints of adjacent means, until no boundary moves). Up to ``bins`` values this is the exact
    optimum. Groups come out sorted by mean, easiest first; with fewer distinct values than ``k`` the
    hardest groups are empty. Equal values everywhere: ``k`` equal-count groups in the given order.
    """
    m = values.numel()
    x = values.to(torch.float64)
    if k == 1 or m <= k or bool(x[0] == x[-1]):
        return torch.div(torch.arange(k + 1) * m, k, rounding_mode="floor")
    x = x - x.mean()  # centred: smaller prefix sums, less cancellation in the group costs
    prefix = torch.zeros(m + 1, dtype=torch.float64)
    torch.cumsum(x, 0, out=prefix[1:])
    bounds = _lloyd(x, prefix, _optimal_runs(x, prefix, k, bins), max_iter)
    return torch.cat([bounds, torch.full((k + 1 - bounds.numel(),), m, dtype=bounds.dtype)])


def _optimal_runs(x: Tensor, prefix: Tensor, k: int, bins: int) -> Tensor:
    """Boundaries of the best grouping of ``x`` into at most ``k`` groups whose edges are run edges."""
    m = x.numel()
    by_count = torch.div(torch.arange(bins + 1) * m, bins, rounding_mode="floor")
    by_width = torch.searchsorted(x, torch.linspace(float(x[0]), float(x[-1]), bins + 1, dtype=torch.float64))
    edges = torch.cat([by_count, by_width]).clamp_(0, m)
    inner = edges < m
    edges[inner] = torch.searchsorted(x, x[edges[inner]])  # snap to the start of a run of equal values
    edges = torch.unique(torch.cat([edges, edges.new_tensor([0, m])]))  # sorted, 0 and m included
    sq = torch.zeros(m + 1, dtype=torch.float64)
    torch.cumsum(x * x, 0, out=sq[1:])
    count, total, squares = edges.to(torch.float64), prefix[edges], sq[edges]
    del sq
    # cost[i, j]: squared deviation of the values between edges i < j around their mean
    n_ij = count[None, :] - count[:, None]
    s_ij = total[None, :] - total[:, None]
    cost = (squares[None, :] - squares[:, None]) - s_ij * s_ij / n_ij.clamp_min(1.0)
    cost = cost.clamp_min_(0.0).masked_fill_(n_ij <= 0, math.inf)
    layers = min(k, edges.numel() - 1)
    best = torch.full((edges.numel(),), math.inf, dtype=torch.float64)
    best[0] = 0.0
    choices = []
    for _ in range(layers):  # one min-plus product per group, never a loop over samples
        best, arg = (best[:, None] + cost).min(dim=0)
        choices.append(arg)
    picked = [edges.numel() - 1]
    for arg in reversed(choices):
        picked.append(int(arg[picked[-1]]))
    return edges[torch.tensor(picked[::-1])]


def _lloyd(x: Tensor, prefix: Tensor, bounds: Tensor, max_iter: int) -> Tensor:
    """Lloyd iterations on contiguous groups of ascending ``x`` from ``bounds`` (every group non-empty)."""
    centers = (prefix[bounds[1:]] - prefix[bounds[:-1]]) / (bounds[1:] - bounds[:-1])
    for _ in range(max_iter):  # one pass over the groups per iteration, never over samples
        inner = torch.searchsorted(x, (centers[:-1] + centers[1:]) / 2)  # a value at a midpoint goes up
        new = torch.cat([bounds[:1], inner, bounds[-1:]])
        if torch.equal(new, bounds):
            break
        bounds = new
        sizes = bounds[1:] - bounds[:-1]
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        centers = torch.where(sizes > 0, sums / sizes.clamp_min(1), centers).sort().values  # empty: last mean
    return bounds
