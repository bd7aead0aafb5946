"""Pruning ratios set by internal generalization (research): prune more while the pruned samples keep improving.

Both schedules read :class:`~lightning_ted.core.generalization.GeneralizationMeter` pooled over the last
``window`` epochs (``ig/gap``: the extra loss per epoch of sitting out; ``ig/ratio``: how fast the pruned samples'
loss falls against the kept ones') and set each epoch's ratio from the readings of the epochs before it only.
The ratio of an epoch is therefore a pure function of checkpointed state (the meter): every DDP rank computes
the same one, and a resumed run the same as an uninterrupted one. Where no reading exists yet (the first
pruning epochs, or a rule that never trains a sample two epochs running: RS2 at a ratio of 0.5 or more) they
fall back to their plan.

- :class:`GeneralizationBudgetSchedule`: the user says how much to save; each pruning epoch drops its fair
  share of what is left, scaled up when sitting out cost the pruned samples less than the run's average so far
  (``ig/gap`` over the last ``window`` epochs against all earlier ones) and down when it cost more.
  Drops are counted in whole steps (``batch_size x processes x accumulate_grad_batches`` samples), so the
  total saving and the optimizer-step count are the plan's: ``total_optimizer_steps`` stays exact.
- :class:`GeneralizationToleranceSchedule`: no budget; the ratio rises by ``step`` while the pace is at least
  ``1 - tolerance`` and falls back by ``step`` when it is not. The step count is not known in advance.

Research only: see the docs' *How TED works* for what the frontier showed of them.
"""

from __future__ import annotations

import math
from abc import abstractmethod

from lightning_ted.core.generalization import GeneralizationMeter, GeneralizationReading
from lightning_ted.core.schedules import PruneSchedule, _check_ratio


class GeneralizationSchedule(PruneSchedule):
    """Base of the schedules driven by ``ig/ratio``; bound to the datamodule's meter at setup (:meth:`attach`)."""

    def __init__(self, window: int = 2, warmup_epochs: int = 1, anneal: float = 0.125, max_epochs=None) -> None:
        if int(window) != window or window < 1:
            raise ValueError(f"window must be a positive number of epochs to pool the pace over, got {window!r}")
        self.window = int(window)
        self.meter: GeneralizationMeter | None = None
        self.num_samples = 0
        self.quantum = 1
        self.max_drop = 0
        super().__init__(warmup_epochs, anneal, max_epochs)

    def attach(
        self, meter: GeneralizationMeter, num_samples: int, quantum: int, max_drop: int, exact_counts: bool
    ) -> None:
        """Read ``meter``; drop whole multiples of ``quantum`` samples, at most ``max_drop`` per epoch."""
        self.meter, self.num_samples = meter, int(num_samples)
        self.quantum, self.max_drop = max(1, int(quantum)), max(0, int(max_drop))

    def reading(self, epoch: int, window: int | None = None) -> GeneralizationReading:
        """The meter's readings pooled over the ``window`` epochs before ``epoch`` (all of them: ``None``)."""
        if self.meter is None:
            return GeneralizationReading(epoch, math.nan, math.nan, 0, 0, 0)
        return self.meter.pooled(0 if window is None else epoch - window, epoch - 1)

    def pace(self, epoch: int) -> float:
        """``ig/ratio`` over the ``window`` epochs before ``epoch`` (``nan`` without a reading)."""
        return self.reading(epoch, self.window).ratio

    def _pruning_window(self) -> range:
        return range(self.warmup_epochs, self.warmup_epochs + self.pruning_epochs)

    def _pruning_ratio(self, t: int, T: int) -> float:
        epoch = self.warmup_epochs + t - 1
        return self._ratios(epoch)[epoch]

    @abstractmethod
    def _ratios(self, through: int) -> dict[int, float]:
        """The ratio of every pruning epoch up to ``through``, each from the readings of the epochs before it."""


class GeneralizationBudgetSchedule(GeneralizationSchedule):
    """Save ``saved`` of the run's sample-passes, spent in the epochs where the pruned samples still improve.

    ``lightning-ted frontier --targets 0.3 0.5`` runs it at those savings (its ``saved``).

    Args:
        saved: fraction of all ``max_epochs x N`` sample-passes to skip (rounded to whole steps).
        swing: how far the cost may move an epoch's share: between ``1 - swing`` and ``1 + swing`` times its
            fair share of the drops left.
        max_ratio: most any epoch may prune.
        window: the epochs the meter's readings are pooled over, a positive integer.
        warmup_epochs, anneal, max_epochs: as for :class:`~lightning_ted.core.schedules.PruneSchedule`.

    Raises:
        ValueError: ``saved`` or ``max_ratio`` outside ``[0, 1)``, ``swing`` outside ``[0, 1]``, ``window`` not a
            positive integer or an argument of ``PruneSchedule`` out of range; at setup, a saving the pruning
            epochs cannot reach below ``max_ratio``, or a method whose kept count is loss-dependent.

    Examples:
        >>> schedule = GeneralizationBudgetSchedule(saved=0.3, max_epochs=10)
        >>> round(sum(schedule.prune_ratio(e) for e in range(10)) / 10, 3)  # no readings yet: evenly spread
        0.3
    """

    level_argument = "saved"
    moves_whole_steps = True

    def __init__(self, saved: float = 0.3, swing: float = 0.5, max_ratio: float = 0.8, window: int = 2,
                 warmup_epochs: int = 1, anneal: float = 0.125, max_epochs: int | None = None) -> None:  # fmt: skip
        self.saved = _check_ratio(saved)
        self.max_ratio = _check_ratio(max_ratio)
        if not 0.0 <= float(swing) <= 1.0:
            raise ValueError(f"swing must be in [0, 1] (1: an epoch's share may go from 0 to twice it), got {swing!r}")
        self.swing = float(swing)
        super().__init__(window, warmup_epochs, anneal, max_epochs)

    def attach(
        self, meter: GeneralizationMeter, num_samples: int, quantum: int, max_drop: int, exact_counts: bool
    ) -> None:
        if not exact_counts:
            raise ValueError(
                "GeneralizationBudgetSchedule spends an exact number of sample-passes, but this pruning method keeps a "
                "loss-dependent number of samples (infobatch, seta, a gated TEDVariant); use a method whose kept count "
                "follows the ratio (ted, random, ucb, ...) or GeneralizationToleranceSchedule."
            )
        super().attach(meter, num_samples, quantum, max_drop, exact_counts)
        self._plan()  # refuse an unreachable saving now, not at the first pruning epoch

    def _plan(self) -> tuple[int, int, int, int]:
        """``(quanta to drop over the run, most quanta per epoch, samples per quantum, samples)``."""
        n = self.num_samples or 1_000_000  # unattached (a doctest, a plot): ratios from a large N
        quantum = self.quantum if self.num_samples else 1
        max_drop = self.max_drop if self.num_samples else n
        per_epoch = min(max_drop, int(self.max_ratio * n)) // quantum
        total = round(self.saved * self._epochs() * n / quantum)
        if total > per_epoch * self.pruning_epochs:
            raise ValueError(
                f"GeneralizationBudgetSchedule(saved={self.saved:g}) needs {total * quantum} of "
                f"{self._epochs() * n} sample-passes dropped, but its {self.pruning_epochs} pruning epochs can drop "
                f"at most {per_epoch * quantum} each (max_ratio={self.max_ratio:g}, the method's max_weight, whole "
                "steps); lower saved, raise max_ratio, or shorten warmup_epochs/anneal."
            )
        return total, per_epoch, quantum, n

    def _ratios(self, through: int) -> dict[int, float]:
        total, per_epoch, quantum, n = self._plan()
        window = list(self._pruning_window())
        ratios, left = {}, total
        for i, epoch in enumerate(window):
            remaining = len(window) - i
            fair = left / remaining
            cost, average = self.reading(epoch, self.window).gap, self.reading(epoch).gap
            scale = 1.0  # below the run's average cost so far: prune more; above it: less
            if math.isfinite(cost) and math.isfinite(average) and average != 0:
                scale = 1.0 + self.swing * min(1.0, max(-1.0, (average - cost) / abs(average)))
            lowest = max(0, left - (remaining - 1) * per_epoch)  # later epochs must still be able to finish
            drop = min(per_epoch, left, max(lowest, round(fair * scale)))
            ratios[epoch] = drop * quantum / n
            left -= drop
            if epoch >= through:
                break
        return ratios


class GeneralizationToleranceSchedule(GeneralizationSchedule):
    """No ratio to guess: prune more while the pruned samples improve at least ``1 - tolerance`` as fast as the
    kept ones, less when they do not. The step count is not known before training: use an epoch-based LR schedule.

    Args:
        tolerance: how much slower than the kept samples the pruned ones may improve (0.5: half as fast).
        start: ratio of the first pruning epoch.
        step: change of the ratio per epoch.
        max_ratio: most any epoch may prune.
        window: the epochs the meter's readings are pooled over, a positive integer.
        warmup_epochs, anneal, max_epochs: as for :class:`~lightning_ted.core.schedules.PruneSchedule`.

    Raises:
        ValueError: ``tolerance`` outside ``[0, 1]``, ``start``/``max_ratio`` outside ``[0, 1)``, ``step`` not in
            ``(0, 1)``, ``window`` not a positive integer or an argument of ``PruneSchedule`` out of range.

    Examples:
        >>> GeneralizationToleranceSchedule(start=0.2, max_epochs=8).prune_ratio(1)
        0.2
    """

    steps_known = False
    level_argument = "tolerance"  # lightning-ted frontier --ratios 0.3 0.5: two tolerances

    def __init__(self, tolerance: float = 0.5, start: float = 0.2, step: float = 0.1, max_ratio: float = 0.8,
                 window: int = 2, warmup_epochs: int = 1, anneal: float = 0.125,
                 max_epochs: int | None = None) -> None:  # fmt: skip
        if not 0.0 <= float(tolerance) <= 1.0:
            raise ValueError(f"tolerance must be in [0, 1] (0.5: pruned samples half as fast), got {tolerance!r}")
        if not 0.0 < float(step) < 1.0:
            raise ValueError(f"step must be in (0, 1) (the ratio's change per epoch), got {step!r}")
        self.tolerance, self.step = float(tolerance), float(step)
        self.start, self.max_ratio = _check_ratio(start), _check_ratio(max_ratio)
        super().__init__(window, warmup_epochs, anneal, max_epochs)

    def _ratios(self, through: int) -> dict[int, float]:
        ratios, ratio = {}, min(self.start, self.max_ratio)
        for i, epoch in enumerate(self._pruning_window()):
            if i:
                pace = self.pace(epoch)
                if math.isfinite(pace) and pace >= 1 - self.tolerance:
                    ratio = min(self.max_ratio, ratio + self.step)
                elif math.isfinite(pace):
                    ratio = max(0.0, ratio - self.step)
            ratios[epoch] = round(ratio, 12)
            if epoch >= through:
                break
        return ratios
