"""What the pruning datamodule settles with the Trainer when a fit starts: whether the fit is fresh (new
state) or resumed, the pruning callback's presence, and the Trainer options pruning depends on, read once
into the core's typed limits (``TrainerLimits``) and the loaders' ``EpochPlace``.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from lightning_ted.core.run_plan import TrainerLimits
from lightning_ted.data.spec import EpochPlace


def starts_fresh(trainer: L.Trainer) -> bool:
    """Whether this fit starts a new run: no checkpoint to resume from and no epoch done by this Trainer.

    A second ``fit`` of the same datamodule, schedule or callback on a new Trainer must not inherit the
    first run's scores; one that resumes a checkpoint or continues this Trainer's own run keeps them.
    """
    return trainer.ckpt_path is None and trainer.current_epoch == 0 and trainer.global_step == 0


def ensure_callback(trainer: L.Trainer, callback_class: type) -> None:
    """Add a ``callback_class()`` (``TEDPruningCallback``) when the Trainer has none: without it nothing is
    scored and every epoch would silently train on everything."""
    if any(isinstance(cb, callback_class) for cb in trainer.callbacks):
        return
    rank_zero_info(
        f"lightning-ted: added {callback_class.__name__}() to the Trainer (it lists none; the pruning datamodule "
        f"needs it to score samples). Pass {callback_class.__name__}(...) yourself to choose its options."
    )
    trainer.callbacks.insert(0, callback_class())  # Lightning calls the callbacks' setup after the datamodule's


def ensure_reload_every_epoch(trainer: L.Trainer) -> None:
    """The kept set changes every epoch, so the train loader must be rebuilt every epoch."""
    n = trainer.reload_dataloaders_every_n_epochs
    if n == 0:
        trainer.reload_dataloaders_every_n_epochs = 1
        rank_zero_info(
            "DynamicPruningDataModule set Trainer(reload_dataloaders_every_n_epochs=1): "
            "the kept set changes every epoch."
        )
    elif n != 1:
        raise ValueError(
            f"Trainer(reload_dataloaders_every_n_epochs={n}) would keep one epoch's kept set for {n} "
            "epochs; dynamic pruning rebuilds the train loader every epoch. Set it to 1 (or leave it 0)."
        )


def note_overfitting(trainer: L.Trainer) -> bool:
    """``overfit_batches``: train the first batches of the full data, in order, every epoch (no pruning)."""
    if not trainer.overfit_batches:
        return False
    rank_zero_info(
        f"lightning-ted: Trainer(overfit_batches={trainer.overfit_batches}) trains the same first batches of the "
        "full training set every epoch, in index order; DynamicPruningDataModule prunes nothing while overfitting."
    )
    return True


def trainer_limits(trainer: L.Trainer) -> TrainerLimits:
    """The Trainer's settings the run plan counts batches and steps with (``core/run_plan.py``)."""
    return TrainerLimits(
        trainer.world_size,
        trainer.limit_train_batches,
        trainer.accumulate_grad_batches,
        trainer.max_steps,
        trainer.val_check_interval,
        trainer.check_val_every_n_epoch,
        trainer.limit_val_batches,
    )


def epoch_place(trainer: L.Trainer | None) -> EpochPlace:
    """Where the train loaders load an epoch: ranks, nodes, device and the Trainer's cuts (one process without
    a Trainer)."""
    if trainer is None:
        return EpochPlace()
    return EpochPlace(
        trainer.world_size,
        trainer.global_rank,
        trainer.num_nodes,
        trainer.strategy.root_device,
        trainer.limit_train_batches,
        trainer.overfit_batches,
    )


def start_next_epoch_fresh(trainer: L.Trainer) -> None:
    """After a resume from a checkpoint written in ``on_train_batch_end`` of an epoch's last batch, make the
    next epoch start at its first batch. Called from ``on_train_start``.

    Such a checkpoint restores Lightning's batch progress at that epoch's batch count. Lightning's fit loop
    closes the epoch (without its end hooks) and moves on, but its epoch loop keeps the restored count as the
    next epoch's progress unless the count reaches ``trainer.num_training_batches``, which by then is the next
    epoch's length (the loader is rebuilt every epoch): a longer next epoch (after pruned ones) would train
    only its remainder. ``on_train_start`` runs after the fit loop moved on and before the epoch loop resets,
    so here the epoch loop gets what Lightning gives it when the lengths agree: the last batch counted as
    completed and the per-epoch progress reset.
    """
    fit = trainer.fit_loop
    loop = fit.epoch_loop
    # getattr: Lightning releases before 2.5 have no restart stages (and another reset)
    if not (getattr(loop, "restarted_on_train_batch_end", False) and loop.batch_progress.is_last_batch):
        return
    # the two cases in which Lightning's FitLoop.reset closes the restored epoch
    if not (getattr(fit, "restarted_mid_epoch", False) or not loop.val_loop.batch_progress.is_last_batch):
        return
    loop.batch_progress.increment_completed()
    loop.batch_progress.reset_on_run()
    loop.scheduler_progress.reset_on_run()
    loop.automatic_optimization.optim_progress.reset_on_run()
    loop.val_loop.batch_progress.total.reset()
    loop.reset_restart_stage()  # the restored progress is handled: Lightning resets nothing more
