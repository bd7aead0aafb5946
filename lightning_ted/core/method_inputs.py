"""What a pruning method is handed besides the scores: the bounds the run plan puts on what trained before an
epoch (``TrainedBefore``), what it may read when an epoch starts (``EpochInputs``) and after each training step
(``HeadStep``). Plain records, so the method interface (:mod:`lightning_ted.core.method`) needs nothing above the
core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from lightning_ted.core.selection import Selection
from lightning_ted.core.spec import TrainData


@dataclass(frozen=True)
class TrainedBefore:
    """What a run trained before an epoch, as the run plan bounds it before training: between ``fewest`` and
    ``most`` distinct samples at least once, and (``whole``) whether every earlier epoch trained all the
    samples it kept (``limit_train_batches`` can cut an epoch short)."""

    fewest: int
    most: int
    whole: bool = True


@dataclass(frozen=True)
class EpochInputs:
    """What a method may read when a training epoch starts: the epoch's selection, the run's seed and the
    training data with its loader options."""

    selection: Selection
    seed: int
    data: TrainData


class HeadReadings(Protocol):
    """What a step's head capture offers a method (``methods/taylor.py``'s ``HeadCapture``): the head layer,
    each call's ``(h, delta)`` and the per-sample statistic ``head_statistic`` names."""

    head: Any

    def call_deltas(self, loss_grad: Tensor) -> list[tuple[Tensor, Tensor]]: ...

    def per_sample_delta(self, loss_grad: Tensor) -> tuple[Tensor, Tensor]: ...

    def statistic(self, loss_grad: Tensor, kind: str) -> Tensor: ...


@dataclass
class HeadStep:
    """What the callback hands a method after one training step's backward: the head capture, the
    gradient that reached each per-sample loss, the samples' weights, the learning rate and the epoch's
    selection."""

    capture: HeadReadings
    loss_grad: Tensor
    weight: Tensor
    lr: float | Tensor
    selection: Selection
