"""``TEDPruningCallback``: per-sample losses and Taylor terms in, scores and pruning metrics out.

Per step (``on_train_batch_end``) it reads the per-sample losses the ``training_step`` returned through
:func:`pruned_loss`, turns the captured head input and output gradient into Taylor terms (no extra
backward), and buffers them in the datamodule's state; a step whose ``training_step`` returned ``None``
is skipped and records nothing. Once per epoch it syncs the buffered observations across ranks (one
collective), updates the scores and logs through ``self.log`` so any logger receives the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from typing_extensions import override

from lightning_ted.adapters.compat import CALLBACK_BASES
from lightning_ted.adapters.data_source import PruningDataSource
from lightning_ted.adapters.fit_start import epoch_place, start_next_epoch_fresh, starts_fresh
from lightning_ted.adapters.fit_summary import FitSummary
from lightning_ted.adapters.step_checks import FirstStepChecks, check_step_schedules, log_default_head
from lightning_ted.adapters.steps import total_optimizer_steps
from lightning_ted.methods.base import HeadStep
from lightning_ted.methods.taylor import HeadCapture, find_head
from lightning_ted.observe.epoch_metrics import define_epoch_charts, epoch_scalars, log_score_histogram

PER_SAMPLE_KEY = "per_sample_loss"
SUMMARY_KEY = "fit_summary"  # the summary's counts in the callback's checkpoint state


class TEDPruningCallback(*CALLBACK_BASES):
    """Collect per-sample observations for the pruning method of a :class:`DynamicPruningDataModule`.

    Args:
        head: name of the output ``nn.Linear`` in the ``LightningModule`` (e.g. ``"model.fc"``); by
            default the last ``nn.Linear`` the module registers, which is logged and, at the first
            step, must be the last ``nn.Linear`` the step runs (see :mod:`lightning_ted.adapters.step_checks`).
        quantiles: score quantiles logged each epoch.
        log_per_class: log the kept fraction of each class and its ``ig/*`` readings (``ig/ratio/class_<c>``) when
            the training set exposes its labels.
        progress_bar: show the share of samples the epoch keeps in the progress bar (``kept=61%``).
        summary: print a summary when training ends (rank zero) and log it as ``summary/*`` (see
            :mod:`lightning_ted.adapters.fit_summary`); its numbers stay in ``.summary.values``.

    Raises:
        TypeError: at ``fit``, if the Trainer's data does not come from a ``DynamicPruningDataModule``.
        KeyError: if ``training_step`` does not return the per-sample loss (``return pruned_loss(self, losses)``).
        ValueError: if that loss does not hold one value per sample of the batch.

    Examples:
        >>> import lightning as L, torch
        >>> from torch.utils.data import TensorDataset
        >>> from lightning_ted import DynamicPruningDataModule
        >>> from lightning_ted.zoo.models import Classifier  # its training_step returns pruned_loss(self, losses)
        >>> dm = DynamicPruningDataModule(TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,))), batch_size=16)
        >>> trainer = L.Trainer(max_epochs=4, callbacks=[TEDPruningCallback(summary=False)], logger=False,
        ...                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Classifier(torch.nn.Linear(4, 2), num_classes=2), datamodule=dm)
        >>> dm.kept_history.tolist()  # warm-up on all data, two pruned epochs, all data again (the anneal)
        [64, 39, 32, 64]
    """

    def __init__(
        self,
        head: str | None = None,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        log_per_class: bool = True,
        progress_bar: bool = True,
        summary: bool = True,
    ) -> None:
        self.head = head
        self.log_per_class = log_per_class
        self.progress_bar = progress_bar
        self.quantiles = tuple(float(q) for q in quantiles)
        self.capture: HeadCapture | None = None
        self.datamodule: PruningDataSource | None = None  # the trainer's DynamicPruningDataModule
        self._pending_state: dict[str, Any] | None = None  # an older checkpoint's method run state
        self._trainer: L.Trainer | None = None
        self._bar_epoch = -1  # epoch whose kept count the progress bar shows
        self._checks: FirstStepChecks | None = None
        self.summary: FitSummary | None = FitSummary() if summary else None

    # ------------------------------------------------------------------ lifecycle
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dm = trainer.datamodule
        if not isinstance(dm, PruningDataSource):
            raise TypeError(
                "TEDPruningCallback needs the training data to come from a DynamicPruningDataModule: "
                "call trainer.fit(model, datamodule=DynamicPruningDataModule(...)) "
                f"(got datamodule={type(dm).__name__})."
            )
        self.datamodule = dm
        self._trainer = trainer
        fresh = starts_fresh(trainer)
        if fresh:
            self._bar_epoch = -1
        define_epoch_charts(trainer)
        if dm.run.method.head_statistic is not None and self.capture is None:
            self.capture = HeadCapture(find_head(pl_module, self.head))
            self.capture.enabled = False  # until the first training step starts
            if self.head is None:
                log_default_head(pl_module, self.capture.head)
        self._checks = FirstStepChecks(pl_module, self.capture, default_head=self.head is None)
        dm.run.method.start_fit(pl_module, fresh)  # a new run drops the method's run state (e.g. TED's references)
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.capture is not None:
            self.capture.remove()
            self.capture = None
        if self._checks is not None:
            self._checks.close()

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.summary is not None:
            self.summary.fit_start(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.datamodule is not None:  # a fit resumed at the end of its last epoch has one left to fold in
            self.datamodule.fold_finished_epoch()
        if self.summary is not None and self.datamodule is not None:
            labels = self.datamodule.train_labels() if self.log_per_class else None
            self.summary.report(trainer, self.datamodule, labels)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        start_next_epoch_fresh(trainer)  # fit_start.py: a checkpoint at an epoch's last batch, a longer next epoch
        dm = self.datamodule
        method, schedule = dm.run.method, dm.run.schedule
        exact = (method.exact_kept_count and schedule.steps_known) or dm.overfitting
        adaptive = None if schedule.steps_known else f"{type(schedule).__name__} sets each ratio from the run"
        check_step_schedules(trainer, total_optimizer_steps(trainer) if exact else None, method.name, adaptive)
        if self.summary is not None:
            self.summary.train_start(trainer, dm)  # after every restore: a checkpoint's summary counts

    # ------------------------------------------------------------------ per step
    @override
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.datamodule.run.begun_epoch != trainer.current_epoch:
            # Lightning skips on_train_epoch_start of the epoch after a checkpoint written at an epoch's last
            # batch; an epoch resumed in its middle was begun before the checkpoint and is not begun again
            self._begin_epoch(trainer, pl_module)
        if self.capture is not None:
            self.capture.reset()
            self.capture.enabled = True  # capture head calls of training steps only
            self._checks.on_step_start()
        if self.progress_bar and self._bar_epoch != trainer.current_epoch:
            # once per epoch: the progress bar keeps the last step value, so it shows kept / total all epoch
            # once per epoch, display only (never logged): the trainer's progress-bar dict, which every
            # progress bar renders, keeps its entries, and a string shows "1225/2000" rather than "1e+3"
            self._bar_epoch = trainer.current_epoch
            sel = self.datamodule.run.current_selection
            bar = trainer.progress_bar_metrics
            if isinstance(bar, dict):
                bar["kept"] = f"{100 * len(sel) / max(1, sel.num_samples):.0f}%"  # short: fits 80 columns

    @override
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        ctx = self.datamodule.batch_context if self.datamodule is not None else None
        if self.capture is not None and ctx is not None:
            self._checks.before_backward(ctx.loss)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        dm = self.datamodule
        ctx = dm.batch_context
        if ctx is None:
            raise RuntimeError("the training batch did not come from DynamicPruningDataModule.train_dataloader()")
        if self.capture is not None:
            self.capture.enabled = False
        if outputs is None or (isinstance(outputs, dict) and not outputs):
            # training_step returned None: Lightning skipped the batch, so nothing is recorded for it
            if self.capture is not None:
                self.capture.reset()
            dm.batch_context = None
            return
        if not isinstance(outputs, dict) or PER_SAMPLE_KEY not in outputs:
            raise KeyError(
                f"training_step must return the per-sample loss under {PER_SAMPLE_KEY!r} for pruning; compute "
                "the loss with reduction='none' and `return pruned_loss(self, losses)`."
            )
        losses = outputs[PER_SAMPLE_KEY]
        if losses.dim() != 1 or losses.shape[0] != ctx.index.shape[0]:
            raise ValueError(
                f"outputs[{PER_SAMPLE_KEY!r}] has shape {tuple(losses.shape)} but the batch holds "
                f"{ctx.index.shape[0]} samples; return one loss per sample."
            )
        terms = None
        if self.capture is not None:
            self._checks.on_step_end()
            terms = self._head_values(trainer, ctx)
            self.capture.reset()  # free the head activations now, not at the next step
        dm.run.state.observe(ctx.index, losses, terms)
        dm.batch_context = None

    def _head_values(self, trainer: L.Trainer, ctx: Any) -> torch.Tensor:
        if ctx.loss_grad is None:
            raise RuntimeError(
                "no gradient reached the per-sample loss this step: build the returned loss with "
                "pruned_loss(self, losses) (and keep automatic optimization) so the callback can read dL/dl_k."
            )
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else 1.0
        run = self.datamodule.run
        return run.method.head_values(HeadStep(self.capture, ctx.loss_grad, ctx.weight, lr, run.current_selection))

    # ------------------------------------------------------------------ per epoch
    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin_epoch(trainer, pl_module)

    def _begin_epoch(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = self.datamodule
        dm.record_epoch(trainer.current_epoch)
        if self.summary is not None:
            self.summary.epoch_start(trainer, dm)
        head = self.capture.head if self.capture is not None else None
        dm.run.method.start_epoch(trainer, pl_module, dm.epoch_inputs(), head)

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A checkpoint may be written when validation ends, before on_train_epoch_end: fold the
        # observations in first so every checkpoint holds the scores of everything trained so far.
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self.datamodule is not None:
            self.datamodule.sync_and_update(trainer.current_epoch)
        if self.summary is not None:
            self.summary.eval_start(trainer)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.summary is not None:
            self.summary.eval_end(trainer)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = self.datamodule
        epoch = trainer.current_epoch
        dm.sync_and_update(epoch)
        state = dm.run.state
        metrics = epoch_scalars(
            dm.run.trained_selection,  # what the epoch loaded: the kept set unless limit_train_batches cut it
            state.num_samples,
            dm.run.kept_history,
            epoch,
            state.score,
            state.nonfinite_count,
            self.quantiles,
            dm.train_labels() if self.log_per_class else None,
        )
        metrics.update(dm.run.generalization.reading(epoch).log_values())  # ig/*: observe/generalization.py
        if self.log_per_class:
            metrics.update(dm.run.generalization.class_log_values(epoch))
        for name, value in metrics.items():
            pl_module.log(name, value, on_step=False, on_epoch=True, sync_dist=False)
        log_score_histogram(trainer, state.score, epoch)
        if self.summary is not None:
            self.summary.epoch_end(trainer, dm)

    # ------------------------------------------------------------------ checkpointing
    @override
    def state_dict(self) -> dict[str, Any]:
        """The run's summary counts, so a resumed run reports the whole run (the pruning state, the method's
        per-rank state included, is the datamodule's checkpoint: :meth:`PruningRun.state_dict
        <lightning_ted.core.run.PruningRun.state_dict>`)."""
        if self.datamodule is None or self.summary is None:
            return {}
        return {SUMMARY_KEY: self.summary.state_dict(self._trainer, self.datamodule)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        summary = state_dict.pop(SUMMARY_KEY, None)
        if summary is not None and self.summary is not None:
            self.summary.load_state_dict(summary)
        if not state_dict:
            return
        # a checkpoint written before 2026-12-07 kept the method's per-rank state here: applied once the
        # method is known (newer ones carry it in the datamodule's checkpoint)
        if self.datamodule is None:
            self._pending_state = state_dict
            return
        place = epoch_place(self._trainer)
        self.datamodule.run.method.load_run_state_dict(state_dict, place.world, place.rank)
