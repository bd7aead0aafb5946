"""``ucb`` and ``epsilon_greedy``: loss-driven bandit selection of Raju et al. (2021)."""

from __future__ import annotations

import torch

from lightning_ted.core.selection import Selection, lowest_k_mask
from lightning_ted.core.state import Column, Observations, ScoreState
from lightning_ted.methods.base import PruningMethod


class _LossEMA(PruningMethod):
    """EMA of each sample's loss in ``state.score`` and of its squared deviation in its ``loss_variance`` column."""

    columns = (Column("loss_variance"),)

    def __init__(self, alpha: float = 0.8) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)

    def update(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        idx, loss, fresh = state.visit(obs.index, obs.loss, epoch)
        a = self.alpha
        mean = torch.where(fresh, loss, state.score[idx])
        dev = loss - mean
        state.score[idx] = mean + (1.0 - a) * dev
        var = state.columns["loss_variance"]
        var[idx] = torch.where(fresh, 0.0, a * (var[idx] + (1.0 - a) * dev * dev))


class UCB(_LossEMA):
    """UCB pruning (Raju, Daruwalla and Lipasti 2021, "Accelerating Deep Learning with Dynamic Data Pruning").

    Rule: each epoch keeps the ``N - round(pN)`` samples with the highest upper confidence bound
    ``EMA(loss) + c * sqrt(EMA variance)`` (weight 1): high-loss and uncertain samples are revisited.
    A sample not seen yet has an infinite bound, so it is kept.

    Args:
        alpha: EMA factor of the loss and its variance; each visit updates ``m <- alpha m + (1 - alpha) loss``.
        c: weight of the uncertainty ``sqrt(EMA variance)`` in the bound (0: the EMA loss alone).

    Raises:
        ValueError: if ``alpha`` is not in ``[0, 1)`` or ``c`` is negative.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import Observations, ScoreState
        >>> method = UCB()
        >>> state = ScoreState(6, columns=method.columns)
        >>> loss = torch.tensor([0.1, 2.0, 0.5, 1.0])  # samples 4 and 5 not seen yet
        >>> method.update(state, Observations(torch.arange(4), torch.stack([loss, loss], dim=1)), epoch=0)
        >>> method.select(state, 0.5, torch.Generator().manual_seed(0)).indices.tolist()
        [1, 4, 5]
    """

    name = "ucb"

    def __init__(self, alpha: float = 0.8, c: float = 1.0) -> None:
        super().__init__(alpha)
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c!r}")
        self.c = float(c)

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        n = state.num_samples
        n_drop = int(round(prune_ratio * n))
        bound = state.score + self.c * state.columns["loss_variance"].clamp_min(0).sqrt()  # unscored: +inf, always kept
        kept = torch.nonzero(~lowest_k_mask(bound, n_drop)).squeeze(1)
        return Selection(kept, kept.numel(), 1.0, n, prune_ratio)


class EpsilonGreedy(_LossEMA):
    """Epsilon-greedy pruning (Raju, Daruwalla and Lipasti 2021).

    Rule: of the ``K = N - round(pN)`` kept samples, ``(1 - epsilon) K`` are those with the highest
    EMA loss and ``epsilon K`` are drawn uniformly from the rest (weight 1), so low-loss samples get
    re-measured. Samples not seen yet rank highest.

    Args:
        alpha: EMA factor of the loss; each visit updates ``m <- alpha m + (1 - alpha) loss``.
        epsilon: share of the kept samples drawn uniformly from the rest instead of by highest EMA loss.

    Raises:
        ValueError: if ``alpha`` is not in ``[0, 1)`` or ``epsilon`` is not in ``[0, 1]``.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import Observations, ScoreState
        >>> method = EpsilonGreedy(epsilon=0.5)
        >>> state = ScoreState(6, columns=method.columns)
        >>> loss = torch.tensor([0.1, 2.0, 0.5, 1.0])  # samples 4 and 5 not seen yet
        >>> method.update(state, Observations(torch.arange(4), torch.stack([loss, loss], dim=1)), epoch=0)
        >>> method.select(state, 0.5, torch.Generator().manual_seed(0)).indices.tolist()  # 4, 5 greedy, 2 at random
        [2, 4, 5]
    """

    name = "epsilon_greedy"

    def __init__(self, alpha: float = 0.8, epsilon: float = 0.2) -> None:
        super().__init__(alpha)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        n = state.num_samples
        n_keep = n - int(round(prune_ratio * n))
        n_greedy = int(round((1.0 - self.epsilon) * n_keep))
        greedy = lowest_k_mask(-state.score, n_greedy)  # highest EMA loss (unscored first)
        keys = torch.rand(n, generator=generator).masked_fill_(greedy, 2.0)
        explore = lowest_k_mask(keys, n_keep - n_greedy)
        kept = torch.nonzero(greedy | explore).squeeze(1)
        return Selection(kept, kept.numel(), 1.0, n, prune_ratio)
