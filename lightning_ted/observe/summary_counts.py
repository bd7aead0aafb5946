"""What the end-of-fit summary counts per epoch (:class:`EpochRecord`) and the never/always-dropped shares."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_ted.observe.epoch_metrics import MAX_CLASSES


@dataclass
class EpochRecord:
    """One epoch as the summary counts it. ``batches_before``: batches trained before the counted span began
    (a resume whose checkpoint had no summary counts); ``complete``: it ran all its batches."""

    epoch: int
    planned: int  # samples the epoch's loader trains in full (its kept set, after limit_train_batches)
    kept: int  # samples pruning kept
    first_step: int  # global_step when the counted span of the epoch began
    batches_before: int = 0
    batches: int = 0  # batches trained in the epoch, this rank, batches_before included
    planned_batches: int = 0
    steps: int = 0  # optimizer steps of the counted span (global_step units)
    seconds: float = 0.0  # training seconds of the counted span (validation excluded)
    complete: bool = False
    counted: bool = False  # its kept set is in the per-sample counts (a pruning epoch counted from its start)

    def samples(self, batch_size: int, world: int) -> int:
        """Samples the counted span trained: all planned ones for a complete epoch; else its full batches."""
        done = self.planned if self.complete else min(self.planned, self.batches * batch_size * world)
        return done - min(self.planned, self.batches_before * batch_size * world)

    def share(self, batch_size: int, world: int) -> float:
        """Share of the epoch the counted span covers (1 for a whole epoch)."""
        if self.complete and not self.batches_before:
            return 1.0
        return self.samples(batch_size, world) / max(1, self.planned)


def drop_shares(counts: Tensor | None, pruned_epochs: int, labels: Tensor | None) -> dict[str, float]:
    """Shares of samples never and always dropped over the counted pruning epochs (``counts``: per sample, the
    epochs that kept it), overall and per class; a negative label is in no class and counted apart."""
    if counts is None:
        return {"summary/pruned_epochs": 0.0}
    never = counts == pruned_epochs
    always = counts == 0
    out = {
        "summary/pruned_epochs": float(pruned_epochs),
        "summary/never_dropped": float(never.float().mean()),
        "summary/always_dropped": float(always.float().mean()),
    }
    if labels is None or labels.numel() != counts.numel():
        return out
    labels = labels.cpu().long()
    labelled = labels >= 0  # a negative label (ignore_index=-1) names no class
    if not bool(labelled.all()):
        out["summary/unlabelled_samples"] = float(labels.numel() - int(labelled.sum()))
    classes = int(labels[labelled].max()) + 1 if bool(labelled.any()) else 0
    if classes == 0 or classes > MAX_CLASSES:
        return out
    size = torch.bincount(labels[labelled], minlength=classes)
    for name, mask in (("never_dropped", never), ("always_dropped", always)):
        share = torch.bincount(labels[mask & labelled], minlength=classes).double() / size.clamp(min=1).double()
        for c in torch.nonzero(size > 0).flatten().tolist():
            out[f"summary/{name}/class_{c}"] = float(share[c])
    return out
