"""Static scores: measured in the first epochs on all data, then frozen; later epochs prune the easiest.

``el2n`` and ``grand`` (Paul et al. 2021), ``forgetting`` (Toneva et al. 2019) and ``cat`` (variability of
the loss across early checkpoints) differ only in what one visit measures and how visits combine.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_ted.core.selection import Selection, epoch_generator, kth_smallest
from lightning_ted.core.state import Column, Observations, ScoreState
from lightning_ted.methods.base import PruningMethod

_TIE_STREAM = 5  # generator stream of the fixed tie-breaking keys


class StaticScore(PruningMethod):
    """A static score: measured on all data in the first epochs, then frozen (the base of the rules below).

    Score every sample during the first ``score_epochs`` epochs (all data kept), then keep the
    ``N - round(pN)`` highest-scoring samples with weight 1; ties are broken by a fixed random key.
    Used as it is, the score is the sample's mean loss over the scoring epochs.

    Args:
        score_epochs: epochs scored on all data before the score freezes and pruning starts.

    Raises:
        ValueError: if ``score_epochs`` is below 1.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import ScoreState
        >>> state = ScoreState(6)
        >>> state.score = torch.tensor([0.3, 0.1, 0.9, 0.2, 0.7, 0.5])
        >>> state.last_epoch[:] = 0  # the scoring epoch is over
        >>> StaticScore().select(state, 0.5, torch.Generator().manual_seed(0)).indices.tolist()
        [2, 4, 5]
    """

    def __init__(self, score_epochs: int = 1) -> None:
        if score_epochs < 1:
            raise ValueError(f"score_epochs must be >= 1, got {score_epochs!r}")
        self.score_epochs = int(score_epochs)

    def scoring(self, state: ScoreState) -> bool:
        """Whether the scoring epochs are still running (the last update came from one of them)."""
        return int(state.last_epoch.max()) < self.score_epochs - 1

    def expected_kept(self, num_samples: int, prune_ratio: float, epoch: int) -> int:
        if epoch < self.score_epochs:
            return num_samples
        return num_samples - int(round(prune_ratio * num_samples))

    def update(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        if epoch < self.score_epochs:  # frozen afterwards
            self.accumulate(state, obs, epoch)

    def accumulate(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        """Default: the mean of the per-visit values over the scoring epochs."""
        idx, value, fresh = state.visit(obs.index, self.observation_value(obs), epoch)
        seen = state.seen[idx].float()
        state.score[idx] = torch.where(fresh, value, state.score[idx] + (value - state.score[idx]) / seen)

    def importance(self, state: ScoreState) -> Tensor:
        """Higher = more worth keeping (default: the score)."""
        return state.score

    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        n = state.num_samples
        n_drop = int(round(prune_ratio * n))
        if n_drop == 0 or self.scoring(state):
            return Selection(torch.arange(n), n, 1.0, n, prune_ratio)
        # drop everything below the n_drop-th importance, then the missing ones among its ties at random
        # with a fixed stream (ties are common for forgetting counts; the subset must not change by epoch)
        importance = self.importance(state)
        threshold = kth_smallest(importance, n_drop)
        dropped = importance < threshold
        ties = torch.nonzero(importance == threshold).squeeze(1)
        need = n_drop - int(torch.count_nonzero(dropped))
        order = torch.randperm(ties.numel(), generator=epoch_generator(0, 0, _TIE_STREAM))
        dropped[ties[order[:need]]] = True
        kept = torch.nonzero(dropped.logical_not_()).squeeze(1)
        return Selection(kept, kept.numel(), 1.0, n, prune_ratio)


class EL2N(StaticScore):
    """EL2N (Paul, Ganguli and Dziugaite, NeurIPS 2021, "Deep Learning on a Data Diet").

    Rule: score = mean over the early epochs of ``|softmax(z) - onehot(y)|_2`` (the head's ``dl/dz``);
    afterwards keep the highest-scoring samples (weight 1): the easy, low-error ones are pruned.

    Args:
        score_epochs: epochs scored on all data before the score freezes and pruning starts.

    Raises:
        ValueError: if ``score_epochs`` is below 1.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import Observations, ScoreState
        >>> method, state = EL2N(), ScoreState(6)
        >>> el2n = torch.tensor([0.3, 0.1, 0.9, 0.2, 0.7, 0.5])  # the head reports it as the term
        >>> method.update(state, Observations(torch.arange(6), torch.stack([el2n, el2n], dim=1)), epoch=0)
        >>> method.select(state, 0.5, torch.Generator().manual_seed(0)).indices.tolist()  # the easy half pruned
        [2, 4, 5]
    """

    name = "el2n"
    head_statistic = "el2n"

    def observation_value(self, obs: Observations) -> Tensor:
        return obs.term


class GraNd(StaticScore):
    """GraNd (Paul, Ganguli and Dziugaite, NeurIPS 2021, "Deep Learning on a Data Diet").

    Rule: score = mean over the early epochs of the per-sample gradient norm, here of the output
    head (weight and bias); afterwards keep the highest-scoring samples (weight 1).

    Args:
        score_epochs: epochs scored on all data before the score freezes and pruning starts.

    Raises:
        ValueError: if ``score_epochs`` is below 1.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import Observations, ScoreState
        >>> method, state = GraNd(), ScoreState(6)
        >>> norm = torch.tensor([0.3, 0.1, 0.9, 0.2, 0.7, 0.5])  # the head reports it as the term
        >>> method.update(state, Observations(torch.arange(6), torch.stack([norm, norm], dim=1)), epoch=0)
        >>> method.select(state, 0.5, torch.Generator().manual_seed(0)).indices.tolist()  # small gradients pruned
        [2, 4, 5]
    """

    name = "grand"
    head_statistic = "grand"

    def observation_value(self, obs: Observations) -> Tensor:
        return obs.term


class Forgetting(StaticScore):
    """Forgetting events (Toneva et al., ICLR 2019, "An Empirical Study of Example Forgetting during DNN Learning").

    Rule: count, over the scoring epochs, the visits at which a sample went from correctly to wrongly
    classified; never-learned samples count as most forgotten. Keep the most-forgotten (weight 1): the
    unforgettable ones are pruned. ``state.columns["correctness"]`` holds last correctness + 2 * ever correct.

    Args:
        score_epochs: epochs over which forgetting events are counted (on all data) before pruning starts.

    Raises:
        ValueError: if ``score_epochs`` is below 1.

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import Observations, ScoreState
        >>> method = Forgetting()  # counts over 2 epochs
        >>> state = ScoreState(4, columns=method.columns)
        >>> for epoch, correct in enumerate([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]]):  # the term: 1 = correct
        ...     method.update(state, Observations(torch.arange(4), torch.tensor([[1.0] * 4, correct]).T), epoch)
        >>> method.select(state, 0.5, torch.Generator().manual_seed(0)).indices.tolist()  # 0 forgot, 2 never learned
        [0, 2]
    """

    name = "forgetting"
    head_statistic = "correct"
    columns = (Column("correctness"),)

    def __init__(self, score_epochs: int = 2) -> None:
        super().__init__(score_epochs)

    def accumulate(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        idx, correct, fresh = state.visit(obs.index, obs.term, epoch)
        prev = state.columns["correctness"][idx]
        was_correct = torch.remainder(prev, 2.0)
        forgot = ((was_correct == 1) & (correct == 0) & ~fresh).float()
        state.score[idx] = torch.where(fresh, 0.0, state.score[idx]) + forgot
        ever = torch.where(fresh, correct, torch.maximum((prev >= 2).float(), correct))
        state.columns["correctness"][idx] = correct + 2.0 * ever

    def importance(self, state: ScoreState) -> Tensor:
        never_learned = state.columns["correctness"] < 2
        return state.score + never_learned.float() * (self.score_epochs + 1)


class CAT(StaticScore):
    """CAT, Checkpoints Across Time (arXiv 2405.19462).

    Rule: score = standard deviation of each sample's loss across the scoring epochs (one loss per
    epoch, the model's state at that visit acting as the checkpoint); keep the most variable samples
    (weight 1): those whose loss stays flat, learned or not, are pruned. Running mean in ``state.columns["loss_mean"]``,
    sum of squared deviations (Welford) in ``state.score``.

    Args:
        score_epochs: epochs (checkpoints) whose losses the standard deviation is taken over, on all data.

    Raises:
        ValueError: if ``score_epochs`` is below 2 (one loss has no variability).

    Examples:
        >>> import torch
        >>> from lightning_ted.core.state import Observations, ScoreState
        >>> method = CAT(score_epochs=2)
        >>> state = ScoreState(4, columns=method.columns)
        >>> for epoch, loss in enumerate([[1.0, 1.0, 1.0, 1.0], [1.0, 0.5, 0.9, 0.1]]):
        ...     method.update(state, Observations(torch.arange(4), torch.tensor([loss, loss]).T), epoch)
        >>> [round(v, 3) for v in method.importance(state).tolist()]  # each sample's loss std across the epochs
        [0.0, 0.25, 0.05, 0.45]
        >>> method.select(state, 0.5, torch.Generator().manual_seed(0)).indices.tolist()
        [1, 3]
    """

    name = "cat"
    columns = (Column("loss_mean"),)

    def __init__(self, score_epochs: int = 3) -> None:
        if score_epochs < 2:
            raise ValueError(f"cat needs at least 2 scoring epochs to measure variability, got {score_epochs!r}")
        super().__init__(score_epochs)

    def accumulate(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        idx, loss, fresh = state.visit(obs.index, obs.loss, epoch)
        mean = torch.where(fresh, loss, state.columns["loss_mean"][idx])
        new_mean = mean + (loss - mean) / state.seen[idx].float()
        m2 = torch.where(fresh, 0.0, state.score[idx]) + (loss - mean) * (loss - new_mean)
        state.columns["loss_mean"][idx], state.score[idx] = new_mean, m2

    def importance(self, state: ScoreState) -> Tensor:
        return (state.score / state.seen.clamp_min(1).float()).sqrt()
