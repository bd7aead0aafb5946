"""Pruning-ratio schedules: which fraction of the data to skip in each epoch.

A schedule is bound to the run length (``max_epochs``) by the datamodule at ``setup`` so it can never
disagree with the ``Trainer``. Epochs before ``warmup_epochs`` and the last ``anneal`` fraction of epochs
train on all data: scores need a first pass, and the model should finish on the full distribution.
With ``anneal > 0`` at least one final epoch is a full-data one, unless that would leave fewer than two
epochs to prune (a run that short gives pruning the epochs).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod


def _check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not (0.0 <= ratio < 1.0) or math.isnan(ratio):
        raise ValueError(
            f"prune ratio must be in [0, 1), got {ratio!r}: it is the fraction of samples skipped per epoch, "
            "and 1 would skip everything. Use e.g. ratio=0.5."
        )
    return ratio


class PruneSchedule(ABC):
    """Maps an epoch to the fraction of samples pruned in it: the base of every schedule.

    A subclass gives the ratio inside the pruning window (``_pruning_ratio(t, T)``); the base places that
    window after the warm-up and before the anneal, and holds the run length: the datamodule calls
    ``follow(max_epochs)`` at each fit's setup, then ``prune_ratio(epoch)`` for every epoch.

    Args:
        warmup_epochs: leading epochs on the full data (scores need one pass first).
        anneal: fraction of the run, at its end, trained on the full data again (InfoBatch's delta);
            when ``anneal > 0`` it is at least one epoch as long as two pruning epochs remain.
        max_epochs: run length; left ``None`` it follows the ``Trainer`` of each fit (set at setup).

    Raises:
        ValueError: ``warmup_epochs`` is not a non-negative integer, ``anneal`` is outside ``[0, 1)``, or
            ``max_epochs`` is given and below 1.

    Examples:
        >>> class Half(PruneSchedule):
        ...     def _pruning_ratio(self, t, T):
        ...         return 0.5
        >>> schedule = Half(warmup_epochs=1, anneal=0.25)
        >>> schedule.follow(8)  # what the datamodule does for Trainer(max_epochs=8)
        >>> schedule.pruning_epochs, [schedule.prune_ratio(e) for e in range(8)]
        (5, [0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0])
    """

    def __init__(self, warmup_epochs: int = 1, anneal: float = 0.125, max_epochs: int | None = None) -> None:
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be a non-negative integer, got {warmup_epochs!r}")
        if not (0.0 <= float(anneal) < 1.0):
            raise ValueError(f"anneal must be in [0, 1) (a fraction of max_epochs), got {anneal!r}")
        self.warmup_epochs = int(warmup_epochs)
        self.anneal = float(anneal)
        self.max_epochs: int | None = None
        self.pinned = max_epochs is not None  # the user fixed the run length: a Trainer must agree with it
        if max_epochs is not None:
            self.bind(max_epochs)

    def bind(self, max_epochs: int) -> None:
        """Fix the run length. Raises if it was already fixed to another value."""
        if max_epochs is None or int(max_epochs) < 1:
            raise ValueError(
                f"the pruning schedule needs a finite run length, got max_epochs={max_epochs!r}: "
                "set Trainer(max_epochs=...)."
            )
        if self.max_epochs is not None and self.max_epochs != int(max_epochs):
            raise ValueError(
                f"the schedule was built for max_epochs={self.max_epochs} but the Trainer runs "
                f"max_epochs={max_epochs}; leave the schedule's max_epochs unset so it follows the Trainer."
            )
        self.max_epochs = int(max_epochs)

    def follow(self, max_epochs: int) -> None:
        """Bind to the run length of a new fit: a length the user left unset follows every new Trainer
        (one schedule can serve several fits); a pinned one must agree with it (see :meth:`bind`)."""
        if not self.pinned:
            self.max_epochs = None
        self.bind(max_epochs)

    @property
    def anneal_epochs(self) -> int:
        """Number of final full-data epochs: ``round(anneal * max_epochs)``, at least 1 when ``anneal > 0``
        unless that leaves fewer than two pruning epochs (runs of 3 or fewer epochs with one warm-up epoch)."""
        epochs = self._epochs()
        rounded = int(round(self.anneal * epochs))
        if rounded == 0 and self.anneal > 0 and epochs - self.warmup_epochs - 1 >= 2:
            return 1
        return rounded

    @property
    def pruning_epochs(self) -> int:
        """Number of epochs that may prune (T in the formulas)."""
        return max(0, self._epochs() - self.warmup_epochs - self.anneal_epochs)

    def _epochs(self) -> int:
        if self.max_epochs is None:
            raise RuntimeError(
                "the pruning schedule does not know the run length yet: it takes it from the Trainer when "
                "trainer.fit(model, datamodule=dm) sets the datamodule up. To build loaders without a Trainer, give "
                "the schedule its length, e.g. RollerCoasterSchedule(ratio, max_epochs=10)."
            )
        return self.max_epochs

    def prune_ratio(self, epoch: int) -> float:
        """Fraction of the data pruned in ``epoch`` (0-based)."""
        T = self.pruning_epochs  # raises if the schedule is not bound to a run length
        t = epoch - self.warmup_epochs + 1  # 1..T inside the pruning window
        if t < 1 or t > T:
            return 0.0
        return float(self._pruning_ratio(t, T))

    def kept_fraction(self, epoch: int) -> float:
        return 1.0 - self.prune_ratio(epoch)

    #: whether the run's kept counts, so its optimizer steps, are known before training (see adaptive_schedules.py)
    steps_known = True
    #: whether it moves drops between epochs in whole optimizer steps, which keeps the step total only while every
    #: epoch runs all its batches (``GeneralizationBudgetSchedule``)
    moves_whole_steps = False
    #: the argument ``lightning-ted frontier`` sets per run (``--ratios``/``--targets``)
    level_argument = "ratio"

    def attach(self, meter: object, num_samples: int, quantum: int, max_drop: int, exact_counts: bool) -> None:  # noqa: B027
        """Bound to a run at setup: its internal-generalization meter, ``num_samples``, the samples one optimizer
        step trains (``quantum``), the most one epoch may drop and whether the method keeps exactly what the
        ratio says. A fixed schedule needs none of it; :mod:`lightning_ted.core.adaptive_schedules` reads them."""

    @abstractmethod
    def _pruning_ratio(self, t: int, T: int) -> float:
        """Pruned fraction at pruning epoch ``t`` in ``1..T``."""

    def state_dict(self) -> dict:
        return {"max_epochs": -1 if self.max_epochs is None else self.max_epochs}


class RollerCoasterSchedule(PruneSchedule):
    """TED's progressive schedule: kept fraction ``(1 - s) ** ((t / T) ** beta)``.

    ``beta < 1`` prunes quickly in the first pruning epochs and slowly afterwards; at the last pruning
    epoch the kept fraction reaches ``1 - s``.

    Args:
        ratio: ``s``, the fraction pruned at the last pruning epoch, in ``[0, 1)``.
        beta: shape of the rise, a positive finite number (below 1: most of the rise comes early).
        warmup_epochs, anneal, max_epochs: as for ``PruneSchedule``.

    Raises:
        ValueError: ``ratio`` is outside ``[0, 1)``, ``beta`` is not positive and finite, or an argument of
            ``PruneSchedule`` is out of range.

    Examples:
        >>> schedule = RollerCoasterSchedule(ratio=0.5, beta=0.5)
        >>> schedule.follow(8)
        >>> [round(schedule.prune_ratio(e), 2) for e in range(8)]
        [0.0, 0.25, 0.33, 0.39, 0.43, 0.47, 0.5, 0.0]
    """

    def __init__(
        self,
        ratio: float = 0.5,
        beta: float = 0.5,
        warmup_epochs: int = 1,
        anneal: float = 0.125,
        max_epochs: int | None = None,
    ) -> None:
        self.ratio = _check_ratio(ratio)
        if not beta > 0 or math.isinf(beta):
            raise ValueError(f"beta must be a positive finite number (beta < 1 prunes early), got {beta!r}")
        self.beta = float(beta)
        super().__init__(warmup_epochs, anneal, max_epochs)

    def _pruning_ratio(self, t: int, T: int) -> float:
        return 1.0 - math.exp(((t / T) ** self.beta) * math.log1p(-self.ratio))


class ConstantSchedule(PruneSchedule):
    """Prune the same fraction ``ratio`` in every pruning epoch (InfoBatch-style).

    Args:
        ratio: the fraction pruned in each pruning epoch, in ``[0, 1)``.
        warmup_epochs, anneal, max_epochs: as for ``PruneSchedule``.

    Raises:
        ValueError: ``ratio`` is outside ``[0, 1)`` or an argument of ``PruneSchedule`` is out of range.

    Examples:
        >>> schedule = ConstantSchedule(ratio=0.3, max_epochs=8)  # a fixed length: a Trainer must agree
        >>> [schedule.prune_ratio(e) for e in range(8)]
        [0.0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.0]
    """

    def __init__(
        self, ratio: float = 0.5, warmup_epochs: int = 1, anneal: float = 0.125, max_epochs: int | None = None
    ) -> None:
        self.ratio = _check_ratio(ratio)
        super().__init__(warmup_epochs, anneal, max_epochs)

    def _pruning_ratio(self, t: int, T: int) -> float:
        return self.ratio


class LinearSchedule(PruneSchedule):
    """Raise the pruned fraction linearly from ``ratio / T`` to ``ratio`` over the pruning epochs.

    Args:
        ratio: the fraction pruned at the last pruning epoch, in ``[0, 1)``.
        warmup_epochs, anneal, max_epochs: as for ``PruneSchedule``.

    Raises:
        ValueError: ``ratio`` is outside ``[0, 1)`` or an argument of ``PruneSchedule`` is out of range.

    Examples:
        >>> schedule = LinearSchedule(ratio=0.5)
        >>> schedule.follow(8)
        >>> [round(schedule.prune_ratio(e), 2) for e in range(8)]
        [0.0, 0.08, 0.17, 0.25, 0.33, 0.42, 0.5, 0.0]
    """

    def __init__(
        self, ratio: float = 0.5, warmup_epochs: int = 1, anneal: float = 0.125, max_epochs: int | None = None
    ) -> None:
        self.ratio = _check_ratio(ratio)
        super().__init__(warmup_epochs, anneal, max_epochs)

    def _pruning_ratio(self, t: int, T: int) -> float:
        return self.ratio * t / T
