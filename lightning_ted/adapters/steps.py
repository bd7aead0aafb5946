"""One call for sizing a step-counting LR schedule, whether the run prunes or not.

A pruned epoch has fewer batches than a full one, so ``trainer.estimated_stepping_batches`` (full-data
epochs) overcounts a pruned run; a plain DataModule has no ``total_optimizer_steps()``. A script that can
switch pruning off would need a branch; :func:`total_optimizer_steps` is that branch, written once.
"""

from __future__ import annotations

import math
from typing import Any

from lightning_ted.adapters.data_source import PruningDataSource


def total_optimizer_steps(trainer: Any) -> int:
    """Optimizer steps the whole ``fit`` of ``trainer`` takes: call it in ``configure_optimizers``.

    With a :class:`~lightning_ted.DynamicPruningDataModule` it is the pruned run's exact count (each epoch's
    kept samples, ``accumulate_grad_batches``, ``limit_train_batches``, the DDP shard per rank); with any other
    data it is Lightning's ``trainer.estimated_stepping_batches``, which counts the same options for full-data
    epochs. ``Trainer(max_steps=...)`` caps both.

    >>> # in configure_optimizers:
    >>> # total = lightning_ted.total_optimizer_steps(self.trainer)
    >>> # sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total)
    """
    if trainer is None:
        raise RuntimeError(
            "total_optimizer_steps(trainer) needs the Trainer of a running fit: call it in configure_optimizers "
            "as total_optimizer_steps(self.trainer)."
        )
    dm = getattr(trainer, "datamodule", None)
    if isinstance(dm, PruningDataSource):
        steps = dm.total_optimizer_steps()
        if trainer.max_steps is not None and trainer.max_steps >= 0:
            steps = min(steps, trainer.max_steps)
        return int(steps)
    steps = trainer.estimated_stepping_batches
    if not math.isfinite(steps):
        raise ValueError(
            "the run has no end (max_epochs=-1 and max_steps=-1, or an iterable loader without max_steps), so it "
            "has no optimizer-step total to size a schedule with; set Trainer(max_steps=...) or max_epochs."
        )
    return int(steps)
