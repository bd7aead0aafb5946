"""Loss helpers for ``training_step``: weight per-sample losses for the callback (``pruned_loss``), one
loss per sequence for language models (``sequence_loss``) and a per-sample distillation loss
(``distillation_loss``, arXiv 2403.07854) that any method can prune with.

Every method scores samples, so each helper returns one loss per sample. For sequences it is the mean
token loss over that sequence's non-padding targets: long and short sequences count alike, and the LM
head's per-sample gradient is the sum over its positions, which :mod:`lightning_ted.methods.taylor` computes
without a per-sample ``V x d`` gradient.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch.nn.functional as F
from torch import Tensor


def pruned_loss(module: L.LightningModule, per_sample_loss: Tensor) -> dict[str, Any]:
    """Return ``{"loss": weighted mean, "per_sample_loss": losses}`` for ``training_step`` to return.

    ``per_sample_loss`` has one entry per sample of the batch (``reduction="none"``; for sequences, the
    mean over each sample's tokens). During pruned training each entry is multiplied by its sample's
    weight, so the loss stays an unbiased estimate of the full-data loss. Outside pruned training (no
    ``DynamicPruningDataModule`` batch) it is the plain mean.
    """
    if per_sample_loss.dim() != 1:
        raise ValueError(
            f"per_sample_loss must have shape (batch,), got {tuple(per_sample_loss.shape)}: compute the loss "
            "with reduction='none' and, for sequences, average each sample's token losses first."
        )
    ctx = _batch_context(module)
    if ctx is None:
        return {"loss": per_sample_loss.mean(), "per_sample_loss": per_sample_loss.detach()}
    if ctx.index.shape[0] != per_sample_loss.shape[0]:
        raise ValueError(
            f"per_sample_loss has {per_sample_loss.shape[0]} entries but the batch holds {ctx.index.shape[0]} "
            "samples; return one loss per sample (reduction='none')."
        )
    if per_sample_loss.requires_grad:
        per_sample_loss.register_hook(ctx.capture_loss_grad)
        ctx.loss = per_sample_loss
    weights = ctx.weight.to(per_sample_loss.dtype)
    return {"loss": (per_sample_loss * weights).mean(), "per_sample_loss": per_sample_loss.detach()}


def _batch_context(module: L.LightningModule) -> Any:
    trainer = getattr(module, "_trainer", None)
    if trainer is None or not trainer.training:
        return None
    datamodule = getattr(trainer, "datamodule", None)
    return getattr(datamodule, "batch_context", None)


def sequence_loss(logits: Tensor, targets: Tensor, ignore_index: int = -100, shift: bool = True) -> Tensor:
    """Mean cross-entropy over each sequence's targets that are not ``ignore_index`` (shape ``(B,)``).

    ``logits``: ``(B, T, V)``; ``targets``: ``(B, T)`` token ids with ``ignore_index`` at padding.
    ``shift=True`` is the causal-LM convention (position t predicts token t + 1). A sequence with no
    target token (all padding, or a single token when shifting) has loss 0 and no gradient, instead of
    the 0/0 that would turn the batch loss into NaN.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"sequence_loss needs logits (batch, time, vocab) and targets (batch, time); got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if shift:
        logits, targets = logits[:, :-1], targets[:, 1:]
    b, t, v = logits.shape
    token = F.cross_entropy(
        logits.reshape(b * t, v), targets.reshape(b * t), ignore_index=ignore_index, reduction="none"
    )
    mask = (targets != ignore_index).to(token.dtype)
    counts = mask.sum(1)
    return (token.reshape(b, t) * mask).sum(1) / counts.clamp_min(1.0)


def distillation_loss(
    logits: Tensor, targets: Tensor, teacher_logits: Tensor, weight: float = 0.5, temperature: float = 4.0
) -> Tensor:
    """Per-sample ``(1 - weight) CE(logits, y) + weight T^2 KL(softmax(teacher/T) || softmax(logits/T))``.

    ``weight`` = 0 is plain cross-entropy; the ``T^2`` factor keeps the soft term's gradient scale
    independent of the temperature (Hinton et al. 2015).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if teacher_logits.shape != logits.shape:
        raise ValueError(
            f"teacher logits have shape {tuple(teacher_logits.shape)} but the student's have {tuple(logits.shape)}"
        )
    hard = F.cross_entropy(logits, targets, reduction="none")
    if weight == 0.0:
        return hard
    log_student = F.log_softmax(logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    soft = (log_teacher.exp() * (log_teacher - log_student)).sum(-1) * temperature**2
    return (1.0 - weight) * hard + weight * soft
