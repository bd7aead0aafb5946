"""The interface every pruning method implements: state -> kept set, observations -> state."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from lightning_ted.selection import Selection
from lightning_ted.state import Observations, ScoreState


class PruningMethod(ABC):
    """One pruning rule. The sampler, score state, sync and checkpointing are shared by all methods.

    Subclasses set ``name``, say whether they need head-gradient Taylor terms, and implement
    :meth:`select` (which samples an epoch keeps, with which weights) and :meth:`observation_value`
    (what one visit of a sample contributes to its score).
    """

    name: str = "base"
    #: per-sample value the callback reads from the head besides the loss: ``None``, ``"taylor"``
    #: (TED's term), ``"el2n"`` (|dl/dz|), ``"grand"`` (head gradient norm) or ``"correct"`` (0/1).
    head_statistic: str | None = None
    #: whether the state needs a second float32 per sample (``state.aux``).
    uses_aux: bool = False
    #: whether ``expected_kept`` is exact (False when the kept count depends on the scores).
    exact_kept_count: bool = True
    #: Polyak/EMA factor of the score update: ``s <- alpha s + (1 - alpha) v``.
    alpha: float = 0.0

    def bind(self, max_epochs: int | None) -> None:  # noqa: B027 (optional hook, most methods ignore it)
        """Learn the run length from the Trainer (called at setup); methods with an end phase use it."""

    @abstractmethod
    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        """Kept samples and weights for an epoch whose schedule prunes ``prune_ratio`` of the data."""

    def expected_kept(self, num_samples: int, prune_ratio: float, epoch: int) -> int:
        """Kept count the schedule implies for ``epoch``, assuming every sample is scored after epoch 0."""
        if epoch == 0:
            return num_samples  # nothing is scored before the first pass
        return num_samples - int(round(prune_ratio * num_samples))

    def observation_value(self, obs: Observations) -> Tensor:
        """Value that one visit contributes to a sample's score (default: its loss)."""
        return obs.loss

    def update(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        """Fold one epoch's gathered observations into the state."""
        state.apply(obs.index, self.observation_value(obs), self.alpha, epoch)

    def state_dict(self) -> dict:
        return {"name": self.name}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(
                f"the checkpoint was trained with pruning method {state.get('name')!r} but this run uses "
                f"{self.name!r}; resume with the same method or start a new run."
            )
