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

from lightning_ted.compat import CALLBACK_BASES
from lightning_ted.datamodule import DynamicPruningDataModule
from lightning_ted.fit_start import starts_fresh
from lightning_ted.methods.ted import FORWARD_REFERENCES
from lightning_ted.observe.epoch_metrics import define_epoch_charts, epoch_scalars, log_score_histogram
from lightning_ted.pruned_reference import pruned_indices, pruned_reference, require_loss_method
from lightning_ted.selection import epoch_generator
from lightning_ted.step_checks import FirstStepChecks, check_step_schedules, log_default_head
from lightning_ted.taylor import HeadCapture, batch_reference, calls_statistic, find_head, score_values

PER_SAMPLE_KEY = "per_sample_loss"


class TEDPruningCallback(*CALLBACK_BASES):
    """Collect per-sample observations for the pruning method of a :class:`DynamicPruningDataModule`.

    Args:
        head: name of the output ``nn.Linear`` in the ``LightningModule`` (e.g. ``"model.fc"``); by
            default the last ``nn.Linear`` the module registers, which is logged and, at the first
            step, must be the last ``nn.Linear`` the step runs (see :mod:`lightning_ted.step_checks`).
        quantiles: score quantiles logged each epoch.
        log_per_class: log the kept fraction of each class when the training set exposes its labels.
        progress_bar: show the epoch's kept and total sample counts in the progress bar.
    """

    def __init__(
        self,
        head: str | None = None,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        log_per_class: bool = True,
        progress_bar: bool = True,
    ) -> None:
        self.head = head
        self.log_per_class = log_per_class
        self.progress_bar = progress_bar
        self.quantiles = tuple(float(q) for q in quantiles)
        self.capture: HeadCapture | None = None
        self.datamodule: DynamicPruningDataModule | None = None
        self._ema_ref: tuple[torch.Tensor, torch.Tensor | None] | None = None
        # (epoch, G, gb) of the pruned-set reference; G is None when that epoch prunes nothing
        self._pruned_ref: tuple[int, torch.Tensor | None, torch.Tensor | None] | None = None
        self._trainer: L.Trainer | None = None
        self._bar_epoch = -1  # epoch whose kept count the progress bar shows
        self._checks: FirstStepChecks | None = None

    # ------------------------------------------------------------------ lifecycle
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dm = trainer.datamodule
        if not isinstance(dm, DynamicPruningDataModule):
            raise TypeError(
                "TEDPruningCallback needs the training data to come from a DynamicPruningDataModule: "
                "call trainer.fit(model, datamodule=DynamicPruningDataModule(...)) "
                f"(got datamodule={type(dm).__name__})."
            )
        self.datamodule = dm
        self._trainer = trainer
        if starts_fresh(trainer):  # a new run: no reference gradient of an earlier fit carries over
            self._ema_ref, self._pruned_ref, self._bar_epoch = None, None, -1
        define_epoch_charts(trainer)
        if dm.method.head_statistic is not None and self.capture is None:
            self.capture = HeadCapture(find_head(pl_module, self.head))
            self.capture.enabled = False  # until the first training step starts
            if self.head is None:
                log_default_head(pl_module, self.capture.head)
        self._checks = FirstStepChecks(pl_module, self.capture, default_head=self.head is None)
        if self._forward_reference(dm.method):
            require_loss_method(pl_module, dm.method.reference)

    @staticmethod
    def _forward_reference(method: Any) -> bool:
        return method.head_statistic == "taylor" and getattr(method, "reference", None) in FORWARD_REFERENCES

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.capture is not None:
            self.capture.remove()
            self.capture = None
        if self._checks is not None:
            self._checks.close()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.datamodule.method.exact_kept_count:
            check_step_schedules(trainer, self.datamodule.total_optimizer_steps())

    # ------------------------------------------------------------------ per step
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.capture is not None:
            self.capture.reset()
            self.capture.enabled = True  # capture head calls of training steps only
            self._checks.on_step_start()
        if self.progress_bar and self._bar_epoch != trainer.current_epoch:
            # once per epoch: the progress bar keeps the last step value, so it shows kept / total all epoch
            # once per epoch, display only (never logged): the trainer's progress-bar dict, which every
            # progress bar renders, keeps its entries, and a string shows "1225/2000" rather than "1e+3"
            self._bar_epoch = trainer.current_epoch
            sel = self.datamodule.current_selection
            bar = trainer.progress_bar_metrics
            if isinstance(bar, dict):
                bar["kept"] = f"{len(sel)}/{sel.num_samples}"

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        ctx = self.datamodule.batch_context if self.datamodule is not None else None
        if self.capture is not None and ctx is not None:
            self._checks.before_backward(ctx.loss)

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
        dm.state.observe(ctx.index, losses, terms)
        dm.batch_context = None

    def _head_values(self, trainer: L.Trainer, ctx: Any) -> torch.Tensor:
        if ctx.loss_grad is None:
            raise RuntimeError(
                "no gradient reached the per-sample loss this step: build the returned loss with "
                "pruned_loss(self, losses) (and keep automatic optimization) so the callback can read dL/dl_k."
            )
        kind = self.datamodule.method.head_statistic
        if kind != "taylor":
            return calls_statistic(self.capture.call_deltas(ctx.loss_grad), kind)
        h, delta = self.capture.per_sample_delta(ctx.loss_grad)
        weights = ctx.weight.to(delta.device, torch.float32)
        grad_w, grad_b = batch_reference(h, delta, weights, bias=self.capture.head.bias is not None)
        method = self.datamodule.method
        share = 1.0  # k's share of the reference, left out by the "cross" and "ratio" scores
        pruned = self._pruned_ref[1:] if self._pruned_ref is not None else (None, None)
        if method.reference in FORWARD_REFERENCES and pruned[0] is not None:
            p_w, p_b = (None if t is None else t.to(grad_w.device) for t in pruned)
            if method.reference == "pruned":  # k is not among the pruned samples: no self share
                grad_w, grad_b, share = p_w, p_b, 0.0
            else:  # kept (unweighted batch mean) and pruned means, mixed by their shares of the data
                weights = torch.ones_like(weights)
                a = self.datamodule.current_selection.actual_ratio
                k_w, k_b = batch_reference(h, delta, weights, bias=p_b is not None)
                grad_w = (1 - a) * k_w + a * p_w
                grad_b = None if p_b is None else (1 - a) * k_b + a * p_b
                share = 1.0 - a
        elif method.reference == "ema":
            if self._ema_ref is None:
                self._ema_ref = (grad_w, grad_b)
            else:
                d = method.ema_decay
                old_w, old_b = (None if t is None else t.to(grad_w.device) for t in self._ema_ref)
                new_b = None if grad_b is None else d * old_b + (1 - d) * grad_b
                self._ema_ref = (d * old_w + (1 - d) * grad_w, new_b)
            grad_w, grad_b = self._ema_ref
            share = 1.0 - method.ema_decay
        values = score_values(h, delta, weights, grad_w, grad_b, method.score, share)
        if method.score in ("ratio", "cosine"):  # scale-free variants
            return values
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else 1.0
        # eta <g_k, .>: the first-order loss change of one step; a tensor lr stays a tensor (float() would sync)
        return (lr if isinstance(lr, torch.Tensor) else float(lr)) * values

    # ------------------------------------------------------------------ per epoch
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = self.datamodule
        epoch = trainer.current_epoch
        dm.record_epoch(epoch)
        if self._forward_reference(dm.method) and (self._pruned_ref is None or self._pruned_ref[0] != epoch):
            # a resumed mid-epoch run keeps the reference its checkpoint holds for this epoch
            indices = pruned_indices(
                dm.current_selection, dm.method.reference_size, epoch_generator(dm.seed, epoch, stream=3)
            )
            ref = pruned_reference(
                trainer, pl_module, self.capture.head, dm.train_dataset, indices, dm.batch_size or 1, dm.collate_fn
            )
            self._pruned_ref = (epoch, *(ref if ref is not None else (None, None)))

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A checkpoint may be written when validation ends, before on_train_epoch_end: fold the
        # observations in first so every checkpoint holds the scores of everything trained so far.
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self.datamodule is not None:
            self.datamodule.sync_and_update(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = self.datamodule
        epoch = trainer.current_epoch
        dm.sync_and_update(epoch)
        state = dm.state
        metrics = epoch_scalars(
            dm.trained_selection,  # what the epoch loaded: the kept set unless limit_train_batches cut it
            state.num_samples,
            dm.kept_history,
            epoch,
            state.score,
            state.nonfinite_count,
            self.quantiles,
            dm.train_labels() if self.log_per_class else None,
        )
        for name, value in metrics.items():
            pl_module.log(name, value, on_step=False, on_epoch=True, sync_dist=False)
        log_score_histogram(trainer, state.score, epoch)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The pruned-set reference of the current epoch (so a mid-epoch resume scores against the same
        one) and the EMA reference gradient of every rank (each averages its own batches), stacked by rank.

        Under DDP Lightning calls this on every rank while saving, so the references are gathered here.
        """
        out: dict[str, Any] = {}
        if self._pruned_ref is not None:  # identical on every rank (all-reduced)
            epoch, p_w, p_b = self._pruned_ref
            out.update(pruned_ref_epoch=epoch, pruned_grad_w=None if p_w is None else p_w.cpu())
            out.update(pruned_grad_b=None if p_b is None else p_b.cpu())
        if self._ema_ref is None:
            return out
        grad_w, grad_b = self._ema_ref
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and torch.distributed.is_initialized():
            gather = trainer.strategy.all_gather
            grad_w, grad_b = gather(grad_w), None if grad_b is None else gather(grad_b)
        else:
            grad_w, grad_b = grad_w.unsqueeze(0), None if grad_b is None else grad_b.unsqueeze(0)
        return {**out, "ema_grad_w": grad_w.cpu(), "ema_grad_b": None if grad_b is None else grad_b.cpu()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "pruned_ref_epoch" in state_dict:
            p_w, p_b = state_dict["pruned_grad_w"], state_dict["pruned_grad_b"]
            self._pruned_ref = (int(state_dict["pruned_ref_epoch"]), p_w, p_b)
        if "ema_grad_w" not in state_dict:
            return
        grad_w, grad_b = state_dict["ema_grad_w"], state_dict["ema_grad_b"]
        trainer = self._trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if grad_w.shape[0] == world:  # same world size: each rank continues its own average
            self._ema_ref = (grad_w[rank], None if grad_b is None else grad_b[rank])
        else:  # another world size: every rank starts from the mean reference
            self._ema_ref = (grad_w.mean(0), None if grad_b is None else grad_b.mean(0))
