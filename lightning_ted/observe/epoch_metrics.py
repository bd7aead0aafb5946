"""What the callback reports once per epoch: pruning scalars for any logger, histograms for W&B.

Every value here is computed from O(N) tensors with vectorized ops (a strided sample of at most
``SAMPLE`` scores for quantiles and histograms), so reporting costs no more than one selection pass.
Scalars go through ``LightningModule.log`` and reach any logger (CSV, TensorBoard, W&B); the score
histogram and the epoch-based chart definitions are W&B extras, skipped when W&B is not in use.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch import Tensor

from lightning_ted.adapters.compat import logger_classes
from lightning_ted.core.selection import Selection

SAMPLE = 1 << 20  # quantiles and histograms are read from a strided sample of at most this many scores
MAX_CLASSES = 100  # kept fraction per class is logged for at most this many classes
HISTOGRAM_BINS = 64


def _finite_sample(score: Tensor) -> Tensor:
    sample = score[:: max(1, score.numel() // SAMPLE)]
    return sample[torch.isfinite(sample)]


def score_quantiles(score: Tensor, quantiles: Sequence[float]) -> dict[str, float]:
    """``prune/score_qNN`` for each quantile of the finite scores (unscored samples hold +inf)."""
    sample = _finite_sample(score)
    if sample.numel() == 0 or not quantiles:
        return {}
    values = torch.quantile(sample.double(), torch.tensor(list(quantiles), dtype=torch.float64))
    return {f"prune/score_q{int(round(q * 100)):02d}": v for q, v in zip(quantiles, values.tolist(), strict=True)}


def kept_fraction_per_class(selection: Selection, labels: Tensor) -> dict[str, float]:
    """``prune/kept_fraction/class_<c>``: share of each class's samples that the epoch trains on."""
    num_classes = int(labels.max()) + 1 if labels.numel() else 0
    if num_classes == 0 or num_classes > MAX_CLASSES or int(labels.min()) < 0:
        return {}
    total = torch.bincount(labels, minlength=num_classes)
    kept = torch.bincount(labels[selection.indices], minlength=num_classes)
    frac = kept.double() / total.clamp_min(1).double()
    return {f"prune/kept_fraction/class_{c}": v for c, v in enumerate(frac.tolist()) if total[c] > 0}


def epoch_scalars(
    selection: Selection,
    num_samples: int,
    kept_history: Tensor,
    epoch: int,
    score: Tensor,
    nonfinite: int,
    quantiles: Sequence[float],
    labels: Tensor | None,
) -> dict[str, float]:
    """The scalar pruning metrics of an epoch (keys under ``prune/``)."""
    trained = kept_history[: epoch + 1]
    saved_passes = num_samples * (epoch + 1) - int(trained.sum())
    metrics = {
        "prune/target_ratio": selection.target_ratio,
        "prune/actual_ratio": selection.actual_ratio,
        "prune/kept_samples": float(len(selection)),
        "prune/saved_sample_passes": float(saved_passes),
        "prune/saved_fraction": saved_passes / (num_samples * (epoch + 1)),
        "prune/nonfinite_losses": float(nonfinite),
    }
    metrics.update(score_quantiles(score, quantiles))
    if labels is not None:
        metrics.update(kept_fraction_per_class(selection, labels))
    return metrics


def wandb_loggers(trainer: L.Trainer) -> list:
    """The trainer's ``WandbLogger`` instances of either Lightning package (empty when wandb is not used)."""
    classes = logger_classes("WandbLogger")
    return [lg for lg in trainer.loggers if isinstance(lg, classes)]


def define_epoch_charts(trainer: L.Trainer) -> None:
    """Plot every ``prune/*`` and ``ig/*`` metric against ``epoch`` in W&B (one point per epoch, not per step)."""
    if trainer.global_rank != 0:
        return
    for logger in wandb_loggers(trainer):
        run = logger.experiment
        run.define_metric("epoch")
        run.define_metric("prune/*", step_metric="epoch")
        run.define_metric("ig/*", step_metric="epoch")


def log_score_histogram(trainer: L.Trainer, score: Tensor, epoch: int) -> None:
    """A ``wandb.Histogram`` of the finite scores (``prune/score_histogram``), binned in torch."""
    if trainer.global_rank != 0:
        return
    loggers = wandb_loggers(trainer)
    sample = _finite_sample(score).double()
    if not loggers or sample.numel() == 0:
        return
    import wandb

    lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        hi = lo + 1e-12
    counts = torch.histc(sample, bins=HISTOGRAM_BINS, min=lo, max=hi)
    edges = torch.linspace(lo, hi, HISTOGRAM_BINS + 1, dtype=torch.float64)
    hist = wandb.Histogram(np_histogram=(counts.tolist(), edges.tolist()))
    for logger in loggers:
        logger.log_metrics({"prune/score_histogram": hist, "epoch": epoch}, step=trainer.global_step)
