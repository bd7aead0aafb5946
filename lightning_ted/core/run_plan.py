"""What a pruned run will train, known before it starts: per epoch the kept samples, the batches the
Trainer runs of them (``limit_train_batches``, ``overfit_batches``) and the samples actually loaded; the
optimizer-step total; and the checks that refuse a plan Lightning would stop or crash on.

A method that never drops an unscored sample (TED) keeps more than its schedule says while some samples
were never trained, which ``limit_train_batches`` can cause (a cut epoch loads only part of its kept set).
The plan carries that as a range: it bounds the samples trained before each epoch and asks the method for
the fewest and most it then keeps (:meth:`~lightning_ted.methods.PruningMethod.kept_range`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lightning_ted.core.batch_counts import batches_per_rank, limited_batches, trained_samples
from lightning_ted.core.method_inputs import TrainedBefore
from lightning_ted.core.spec import TrainData

if TYPE_CHECKING:
    from lightning_ted.core.run import PruningRun


class StepCountWarning(UserWarning):
    """The run's optimizer-step total is not known exactly before training; the largest possible one is used."""


@dataclass(frozen=True)
class TrainerLimits:
    """The Trainer's settings that decide how many batches and optimizer steps a run takes."""

    world: int = 1
    limit_train_batches: int | float = 1.0
    accumulate_grad_batches: int = 1
    max_steps: int | None = -1
    val_check_interval: int | float | None = 1.0
    check_val_every_n_epoch: int | None = 1
    limit_val_batches: int | float = 1.0


@dataclass
class EpochPlan:
    epoch: int
    ratio: float  # the schedule's prune ratio
    kept: int  # samples the method keeps (the fewest it may keep)
    batches: int  # training batches each rank runs, after the Trainer's limits
    trained: int  # samples loaded, all ranks together (kept ones beyond the limit are never loaded)
    most_kept: int  # the most it may keep: above ``kept`` only while some samples may still be unscored
    most_batches: int
    most_trained: int

    @property
    def exact(self) -> bool:
        """Whether the epoch's batch count is known before training."""
        return self.batches == self.most_batches


def epoch_plans(run: PruningRun, limits: TrainerLimits, data: TrainData) -> list[EpochPlan]:
    """The plan of every epoch of ``run`` under ``limits`` (the method's expected kept counts)."""
    n, world, batch_size, overfitting = run.state.num_samples, limits.world, data.batch_size or 1, data.overfitting
    before = TrainedBefore(0, 0)
    plans = []
    for epoch in range(run.schedule.max_epochs):
        ratio = 0.0 if overfitting else run.schedule.prune_ratio(epoch)
        fewest, most = (n, n) if overfitting else run.method.kept_range(n, ratio, epoch, before)
        ends = []
        for kept in (fewest, most):
            batches = limited_batches(
                batches_per_rank(kept, world, batch_size, bool(data.drop_last)), limits.limit_train_batches
            )
            ends.append((kept, batches, trained_samples(kept, batches, world, batch_size)))
        plans.append(EpochPlan(epoch, ratio, *ends[0], *ends[1]))
        before = _trained_after(before, plans[-1], n, run.method.keeps_unscored)
    return plans


def _trained_after(before: TrainedBefore, plan: EpochPlan, n: int, keeps_unscored: bool) -> TrainedBefore:
    """Bounds on the distinct samples trained once ``plan``'s epoch is done: at least those it loads and those
    trained before; at most both together. A method that keeps every unscored sample also trains all of them
    except the kept ones the limit cut (``most_kept - trained`` bounds those)."""
    fewest = max(before.fewest, plan.trained)
    if keeps_unscored:
        fewest = max(fewest, n - (plan.most_kept - plan.trained))
    most = min(n, before.most + plan.most_trained)
    whole = before.whole and plan.trained == plan.kept and plan.most_trained == plan.most_kept
    return TrainedBefore(fewest, most, whole)


def total_optimizer_steps(run: PruningRun, limits: TrainerLimits, data: TrainData) -> int:
    """Optimizer steps of the whole run: every epoch's batches, after the Trainer's limits, over
    ``accumulate_grad_batches`` (Lightning steps once more at an epoch's end for a partial accumulation).

    When it cannot be exact (see the module docstring) it is the most the run can take, with a
    :class:`StepCountWarning` naming the epochs and the way to an exact count: a schedule sized with it
    never steps past its end (``OneCycleLR`` raises there), it may stop short of its last steps.
    """
    method, schedule, overfitting = run.method, run.schedule, data.overfitting
    if not method.exact_kept_count and not overfitting:
        raise RuntimeError(
            f"method {method.name!r} keeps a score-dependent number of samples, so the step count is "
            "not known before training; use an epoch-based learning-rate schedule (lr_scheduler interval='epoch') "
            "instead, which follows the epochs whatever their length."
        )
    if not schedule.steps_known and not overfitting:
        raise RuntimeError(
            f"the schedule {type(schedule).__name__} sets each epoch's ratio from the readings of the epochs before "
            "it, so the step count is not known before training; use an epoch-based learning-rate schedule "
            "(lr_scheduler interval='epoch'), or GeneralizationBudgetSchedule, whose step count is fixed in advance."
        )
    if schedule.moves_whole_steps and limits.limit_train_batches not in (1, 1.0):
        raise RuntimeError(
            f"{type(schedule).__name__} moves drops between epochs in whole steps, which keeps the step total only "
            f"while every epoch runs all its batches; Trainer(limit_train_batches={limits.limit_train_batches}) "
            "cuts them. Use limit_train_batches=1.0 or an epoch-based learning-rate schedule."
        )
    accumulate = limits.accumulate_grad_batches
    plans = epoch_plans(run, limits, data)
    fewest = sum(math.ceil(plan.batches / accumulate) for plan in plans)
    most = sum(math.ceil(plan.most_batches / accumulate) for plan in plans)
    cap = limits.max_steps if limits.max_steps is not None and limits.max_steps >= 0 else most
    if min(fewest, cap) != min(most, cap):
        _warn_inexact(run, limits, plans, fewest, most)
    return most


def _warn_inexact(run: PruningRun, limits: TrainerLimits, plans: list[EpochPlan], fewest: int, most: int) -> None:
    cut = next((p for p in plans if p.trained < p.kept or p.most_trained < p.most_kept), None)
    open_ = [p for p in plans if not p.exact]
    first = open_[0]
    listed = ", ".join(str(p.epoch) for p in open_)
    epochs = f"epoch {first.epoch} keeps" if len(open_) == 1 else f"epochs {listed} keep"
    cause = (
        f"Trainer(limit_train_batches={limits.limit_train_batches}) loads only {cut.trained} of the "
        f"{cut.kept} samples epoch {cut.epoch} keeps, and "
        if cut is not None
        else ""
    )
    run.method.warn_once(
        f"steps {fewest} {most}",
        f"lightning-ted: this run takes between {fewest} and {most} optimizer steps, not a number known before "
        f"training: {cause}method {run.method.name!r} never drops a sample it "
        f"has not scored, so {epochs} more samples the fewer were trained before (epoch {first.epoch}: "
        f"{first.kept} to {first.most_kept} samples, {first.batches} to {first.most_batches} batches). "
        f"total_optimizer_steps() returns {most}, the most it can take: a schedule sized with it (OneCycleLR) "
        f"never steps past its end but may stop up to {most - fewest} step(s) before it. For an exact count use "
        "limit_train_batches=1.0 or a method whose kept count ignores scores (random, ucb); or step the "
        "schedule per epoch (lr_scheduler interval='epoch').",
        StepCountWarning,
    )


def check_plan(run: PruningRun, limits: TrainerLimits, data: TrainData) -> None:
    """Refuse, before training, an epoch without a batch (Lightning would end ``fit`` there with only an
    INFO line) and an integer ``val_check_interval`` beyond an epoch's batch count (Lightning would stop
    with an error when that epoch starts). Only for methods whose kept counts are known in advance."""
    if not run.method.exact_kept_count:
        return
    plans = epoch_plans(run, limits, data)
    if not plans:
        return
    empty = next((p for p in plans if p.batches == 0), None)
    if empty is not None:
        keeps = "keeps" if empty.exact else "may keep as few as"
        raise ValueError(
            f"epoch {empty.epoch} {keeps} {empty.kept} of {run.state.num_samples} samples (prune ratio "
            f"{empty.ratio:.4g}), which leaves no training batch (batch_size={data.batch_size or 1}, "
            f"drop_last={bool(data.drop_last)}, {limits.world} process(es)); Lightning would end the run "
            "there. Lower the schedule's ratio, use a smaller batch size, or set drop_last=False."
        )
    interval = limits.val_check_interval
    if isinstance(interval, int) and limits.check_val_every_n_epoch is not None and limits.limit_val_batches > 0:
        smallest = min(plans, key=lambda p: p.batches)
        if interval > smallest.batches:
            raise ValueError(
                f"Trainer(val_check_interval={interval}) is larger than the {smallest.batches} training batches "
                f"of epoch {smallest.epoch}, the smallest epoch under pruning ({smallest.kept} kept samples); "
                f"Lightning would stop there. Use val_check_interval <= {smallest.batches}, a float (a fraction of "
                "each epoch), or check_val_every_n_epoch=None to count batches across epochs."
            )
