"""What a pruned run will train, known before it starts: per epoch the kept samples, the batches the
Trainer runs of them (``limit_train_batches``, ``overfit_batches``) and the samples actually loaded; the
optimizer-step total; and the checks that refuse a plan Lightning would stop or crash on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lightning_ted.loader import batches_per_rank, limited_batches, trained_samples


@dataclass
class EpochPlan:
    epoch: int
    ratio: float  # the schedule's prune ratio
    kept: int  # samples the method keeps
    batches: int  # training batches each rank runs, after the Trainer's limits
    trained: int  # samples loaded, all ranks together (kept ones beyond the limit are never loaded)


def epoch_plans(dm: Any) -> list[EpochPlan]:
    """The plan of every epoch of ``dm``'s run on its Trainer (the method's expected kept counts)."""
    trainer, n = dm.trainer, dm.state.num_samples
    world, batch_size = trainer.world_size, dm.batch_size or 1
    plans = []
    for epoch in range(dm.schedule.max_epochs):
        ratio = 0.0 if dm.overfitting else dm.schedule.prune_ratio(epoch)
        kept = n if dm.overfitting else dm.method.expected_kept(n, ratio, epoch)
        batches = limited_batches(
            batches_per_rank(kept, world, batch_size, bool(dm.drop_last)), dm.trainer.limit_train_batches
        )
        plans.append(EpochPlan(epoch, ratio, kept, batches, trained_samples(kept, batches, world, batch_size)))
    return plans


def total_optimizer_steps(dm: Any) -> int:
    """Optimizer steps of the whole run: every epoch's batches, after the Trainer's limits, over
    ``accumulate_grad_batches`` (Lightning steps once more at an epoch's end for a partial accumulation)."""
    if dm.trainer is None or dm.state is None:
        raise RuntimeError("total_optimizer_steps() needs the datamodule attached to a Trainer and set up")
    if not dm.method.exact_kept_count and not dm.overfitting:
        raise RuntimeError(
            f"method {dm.method.name!r} keeps a score-dependent number of samples, so the step count is "
            "not known before training; use an epoch-based learning-rate schedule (lr_scheduler interval='epoch') "
            "instead, which follows the epochs whatever their length."
        )
    accumulate = dm.trainer.accumulate_grad_batches
    return sum(math.ceil(plan.batches / accumulate) for plan in epoch_plans(dm))


def check_plan(dm: Any) -> None:
    """Refuse, before training, an epoch without a batch (Lightning would end ``fit`` there with only an
    INFO line) and an integer ``val_check_interval`` beyond an epoch's batch count (Lightning would stop
    with an error when that epoch starts). Only for methods whose kept counts are known in advance."""
    if not dm.method.exact_kept_count:
        return
    trainer, plans = dm.trainer, epoch_plans(dm)
    if not plans:
        return
    empty = next((p for p in plans if p.batches == 0), None)
    if empty is not None:
        raise ValueError(
            f"epoch {empty.epoch} keeps {empty.kept} of {dm.state.num_samples} samples (prune ratio "
            f"{empty.ratio:.4g}), which leaves no training batch (batch_size={dm.batch_size or 1}, "
            f"drop_last={bool(dm.drop_last)}, {trainer.world_size} process(es)); Lightning would end the run "
            "there. Lower the schedule's ratio, use a smaller batch size, or set drop_last=False."
        )
    interval = trainer.val_check_interval
    if isinstance(interval, int) and trainer.check_val_every_n_epoch is not None and trainer.limit_val_batches > 0:
        smallest = min(plans, key=lambda p: p.batches)
        if interval > smallest.batches:
            raise ValueError(
                f"Trainer(val_check_interval={interval}) is larger than the {smallest.batches} training batches "
                f"of epoch {smallest.epoch}, the smallest epoch under pruning ({smallest.kept} kept samples); "
                f"Lightning would stop there. Use val_check_interval <= {smallest.batches}, a float (a fraction of "
                "each epoch), or check_val_every_n_epoch=None to count batches across epochs."
            )
