"""The one call a ``training_step`` adds: weight the per-sample losses and hand them to the callback."""

from __future__ import annotations

from typing import Any

import lightning as L
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
    weights = ctx.weight.to(per_sample_loss.dtype)
    return {"loss": (per_sample_loss * weights).mean(), "per_sample_loss": per_sample_loss.detach()}


def _batch_context(module: L.LightningModule) -> Any:
    trainer = getattr(module, "_trainer", None)
    if trainer is None or not trainer.training:
        return None
    datamodule = getattr(trainer, "datamodule", None)
    return getattr(datamodule, "batch_context", None)
