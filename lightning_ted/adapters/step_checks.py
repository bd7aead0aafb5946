"""One-time checks at the first training step: that the head is the layer the loss was computed from and
is laid out batch first, that an eval-mode model is noticed, and that step LR schedules match the run.

Each runs once per ``fit`` (host syncs are fine here) and stops or warns with a message naming the cause
and the fix; the per-step path stays free of them.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.optim import lr_scheduler

from lightning_ted.methods.taylor import HeadCapture


def linear_names(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def module_name(root: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in root.named_modules() if m is module)


def log_default_head(root: nn.Module, head: nn.Module) -> None:
    rank_zero_info(
        f"TEDPruningCallback takes head gradients from {module_name(root, head)!r} ({head}), the last nn.Linear "
        f"{type(root).__name__} registers; pass TEDPruningCallback(head=...) to choose another."
    )


class FirstStepChecks:
    """Runs the checks below once per fit, around the first training step that returns a loss."""

    def __init__(self, module: nn.Module, capture: HeadCapture | None, default_head: bool) -> None:
        self.module, self.capture, self.default_head = module, capture, default_head
        self.done = capture is None
        self._order: LinearCallOrder | None = None

    def on_step_start(self) -> None:
        if self.done:
            return
        self.capture.keep_outputs = True
        if self.default_head and self._order is None:
            self._order = LinearCallOrder(self.module)

    def before_backward(self, per_sample_loss: Tensor | None) -> None:
        if not self.done and per_sample_loss is not None:
            check_batch_first(self.capture, per_sample_loss)  # needs the graph, so before backward

    def on_step_end(self) -> None:
        if self.done:
            return
        self.done = True
        self.capture.keep_outputs = False
        order = self._order.order if self._order is not None else []
        self.close()
        name = module_name(self.module, self.capture.head)
        if self.default_head:
            check_default_head(self.module, name, order)
        check_head_feeds_loss(self.module, name, self.capture)
        warn_eval_mode(self.capture.head, name)

    def close(self) -> None:
        if self._order is not None:
            self._order.remove()
            self._order = None


class LinearCallOrder:
    """Records, during one training step, which ``nn.Linear`` layers ran with autograd on, in call order."""

    def __init__(self, module: nn.Module) -> None:
        self.order: list[str] = []
        self._handles = [
            m.register_forward_hook(functools.partial(self._record, name))
            for name, m in module.named_modules()
            if isinstance(m, nn.Linear)
        ]

    def _record(self, name: str, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if torch.is_grad_enabled() and isinstance(output, Tensor) and output.requires_grad:
            self.order.append(name)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def check_default_head(module: nn.Module, head_name: str, order: list[str]) -> None:
    """The default head must be the last ``nn.Linear`` the step ran: a classifier registered before its
    encoder makes "the last one registered" a hidden layer, whose gradients would be scored silently."""
    if not order or order[-1] == head_name:
        return
    raise ValueError(
        f"the default head {head_name!r} (the last nn.Linear {type(module).__name__} registers) is not the last "
        f"nn.Linear the training step ran: it ran {_dedupe(order)}, ending with {order[-1]!r}, so {head_name!r} "
        f"is likely a hidden layer. The nn.Linear layers are {linear_names(module)}; pass "
        f"TEDPruningCallback(head='{order[-1]}') if that layer produces the logits the loss is computed from, "
        "or head=<the right one>."
    )


def check_head_feeds_loss(module: nn.Module, head_name: str, capture: HeadCapture) -> None:
    """The head's output gradient must arrive non-zero: otherwise its output does not feed the loss."""
    grads = [c.grad for c in capture.calls if c.grad is not None]
    if grads and any(bool(g.ne(0).any()) for g in grads):
        return
    raise RuntimeError(
        f"the head {head_name!r} got no (or an all-zero) output gradient in the first training step: its output "
        "does not feed the returned loss. The model's nn.Linear layers are "
        f"{linear_names(module)}; pass TEDPruningCallback(head=...) naming the layer that produces the logits "
        "the per-sample loss is computed from."
    )


def warn_eval_mode(head: nn.Module, head_name: str) -> None:
    if head.training:
        return
    rank_zero_warn(
        f"the head {head_name!r} is in eval mode during training (a Hugging Face from_pretrained model is in eval "
        "mode until .train() is called): dropout and batch-norm behave as at evaluation. Its gradients are "
        "scored all the same; call model.train() (e.g. in __init__ or on_train_start) if that is not intended."
    )


def check_batch_first(capture: HeadCapture, per_sample_loss: Tensor) -> None:
    """Refuse a head whose output is laid out time first, ``(T, B, C)``, when ``T == B`` hides it.

    Only when a later axis of the head output has the batch size (otherwise the per-step shape check
    suffices): one extra backward of the first sample's loss to the head output. Batch first, that loss
    reads only row 0 of the leading axis; time first, it reads every position of sample 0, i.e. other
    rows. Limits: a first sample whose loss reads a single position looks batch first (then the error
    comes at the first batch whose size differs from T), and a loss that couples samples (contrastive
    losses, batch norm after the head) is refused too, since its per-sample head gradients are not defined.
    """
    b = per_sample_loss.shape[0]
    calls = [c for c in capture.calls if c.output is not None and c.output.requires_grad]
    outputs = [c.output for c in calls if c.output.dim() >= 3 and b in c.output.shape[1:-1]]
    if not outputs or b < 2 or not per_sample_loss.requires_grad:
        return
    grads = torch.autograd.grad(per_sample_loss[0], outputs, retain_graph=True, allow_unused=True)
    for out, g in zip(outputs, grads, strict=True):
        if g is not None and bool(g[1:].ne(0).any()):
            rows = int(g.reshape(g.shape[0], -1).ne(0).any(1).sum())
            raise ValueError(
                f"the head output has shape {tuple(out.shape)} and the loss of the batch's first sample depends "
                f"on {rows} rows of its leading axis: the head must run batch first, (B, T, ...), but it runs "
                "sequence first, (T, B, ...) (as nn.LSTM, nn.GRU and nn.Transformer do without batch_first=True), "
                "and T equals the batch size, so time and batch would be swapped. Build the model with "
                "batch_first=True or transpose to (B, T, ...) before the head."
            )


def step_schedule_length(scheduler: Any) -> int | None:
    """The step count a per-step LR scheduler is sized for, where it can be read; ``None`` otherwise."""
    if isinstance(scheduler, lr_scheduler.OneCycleLR):
        return int(scheduler.total_steps)
    if isinstance(scheduler, lr_scheduler.CosineAnnealingLR):
        return int(scheduler.T_max)
    if isinstance(scheduler, lr_scheduler.LinearLR | lr_scheduler.PolynomialLR):
        return int(scheduler.total_iters)
    if isinstance(scheduler, lr_scheduler.SequentialLR):
        last = step_schedule_length(scheduler._schedulers[-1])
        return None if last is None else int(scheduler._milestones[-1]) + last
    if isinstance(scheduler, lr_scheduler.LambdaLR):  # transformers' schedules: partial(..., num_training_steps=)
        lengths = {getattr(f, "keywords", {}).get("num_training_steps") for f in scheduler.lr_lambdas}
        if len(lengths) == 1 and isinstance(next(iter(lengths)), int):
            return next(iter(lengths))
    return None


def _ends_at(scheduler: Any, steps: int) -> bool:
    """Whether a ``LambdaLR`` of unknown length decays to zero at ``steps`` (probed, never stepped)."""
    if not isinstance(scheduler, lr_scheduler.LambdaLR) or steps < 1:
        return False
    try:
        return all(abs(float(f(steps))) < 1e-9 < float(f(steps - 1)) for f in scheduler.lr_lambdas)
    except Exception:  # an opaque lambda that cannot be probed: no claim
        return False


def check_step_schedules(
    trainer: L.Trainer, total_optimizer_steps: int | None, method: str = "", unknown_because: str | None = None
) -> None:
    """Warn once for a per-step LR scheduler sized for more steps than the pruned run takes.

    Such a schedule (e.g. sized with ``trainer.estimated_stepping_batches``, which counts full-data
    epochs) never finishes its warm-up or decay. Read lengths: ``OneCycleLR.total_steps``,
    ``CosineAnnealingLR.T_max``, ``LinearLR``/``PolynomialLR.total_iters``, ``SequentialLR`` (last
    milestone plus its last scheduler) and transformers' ``num_training_steps``; another ``LambdaLR`` is
    probed for reaching zero exactly at ``estimated_stepping_batches``. Epoch-interval schedulers are left alone.
    ``total_optimizer_steps=None``: ``method`` keeps a loss-dependent number of samples (or, ``unknown_because``,
    something else fixes no step count in advance), so any per-step schedule of known length is warned about.
    """
    taken = total_optimizer_steps  # already capped by Trainer(max_steps) (lightning_ted.adapters.steps)
    for config in trainer.lr_scheduler_configs:
        if config.interval != "step":
            continue
        scheduler = config.scheduler
        sized = step_schedule_length(scheduler)
        if sized is None:
            full = trainer.estimated_stepping_batches
            sized = int(full) if math.isfinite(full) and _ends_at(scheduler, int(full)) else None
        if sized is None:
            continue
        name = type(scheduler).__name__
        if taken is None:
            why = unknown_because or f"pruning method {method!r} keeps a loss-dependent number of samples each epoch"
            rank_zero_warn(
                f"the per-step LR scheduler {name} is sized for {sized} optimizer steps, but {why}, so this run's "
                "step count is not known before training and the schedule will not end with the run (it stops "
                "partway through its decay). Use an epoch-based schedule (lr_scheduler interval='epoch', e.g. "
                "CosineAnnealingLR with T_max=max_epochs), or a method and schedule with a fixed kept count (ted, "
                "random; not GeneralizationToleranceSchedule), whose lightning_ted.total_optimizer_steps(self.trainer) "
                "is exact."
            )
        elif sized > math.ceil(taken / max(1, config.frequency)):
            rank_zero_warn(
                f"the per-step LR scheduler {name} is sized for {sized} optimizer steps but this pruned run takes "
                f"{taken} steps; its warm-up or decay would never finish (trainer.estimated_stepping_batches counts "
                "full-data epochs). Size it with lightning_ted.total_optimizer_steps(self.trainer) in "
                "configure_optimizers."
            )


def _dedupe(order: list[str]) -> list[str]:
    return list(dict.fromkeys(order))
