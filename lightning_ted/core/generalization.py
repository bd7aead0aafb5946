"""Internal generalization, measured for free: how fast the pruned samples' loss falls against the kept ones'.

TED's premise is that fitting the kept samples also fits the pruned ones. Every training step already
observes each trained sample's loss (before its own update), so two observations of one sample bracket
the training between them, with no extra forward pass:

- **kept** (``kept_loss_change``): samples trained in epoch ``e - 1`` and again in ``e``. Their mean loss
  change is a per-epoch rate of a sample that stays in. Bias: the interval holds the sample's own step.
- **pruned** (``pruned_loss_change``): samples trained in ``e`` whose previous observation was in
  ``e' <= e - 2``, so they sat out ``d - 1`` epochs (``d = e - e'``). Their change holds one epoch as a
  kept sample would have had it (its own step in ``e'`` and the epoch after it) and ``d - 1`` epochs out.
  That first epoch is removed by subtracting the kept rate of epoch ``e' + 1`` **among kept samples whose
  previous loss fell in the same bin** (``LOSS_BINS``, log-spaced), and the rest is divided by the epochs
  out, pooled: ``sum(delta - kept[e' + 1, bin]) / sum(d - 1)``. Matching on the previous loss matters
  under score-based pruning: the pruned set is then the samples with the lowest *observed* losses, partly
  by noise, so their next loss regresses up towards the mean, and a low-loss sample's own step gains little;
  kept samples of the same observed loss share both, so the subtraction removes them (against the global
  kept rate the pruned change read +0.08 per epoch where a brute-force pass read -0.01, under TED at 0.3;
  ``experiments/results/ig_validity.md``). A returning sample whose bin had no kept sample is left out.
  It is read in the epoch the samples return (a lag of one epoch or more).

Both intervals run from one observation in an epoch to one in a later epoch, each at a random position, so
they span ``d`` epochs on average, not exactly. ``ratio = pruned / kept`` (while the kept loss falls) reads
"the pruned samples improved ``ratio`` as fast as the kept ones"; ``gap = pruned - kept`` is what sitting
out cost per epoch, in loss; ``relative_gap = gap / loss_level`` (the mean loss the epoch observed) puts it on
the scale of the loss still to lose. One reading is noisy; :meth:`GeneralizationMeter.pooled` pools epochs.

Per class (when the training set exposes at most ``MAX_CLASSES`` integer labels): the same sums over each
class's samples (the own-step correction still from every kept sample of the same previous loss), read by
:meth:`GeneralizationMeter.class_readings` and logged as ``ig/ratio/class_<c>`` and ``ig/gap/class_<c>``:
which classes the pruned samples stop generalizing to first.

State: the last observed loss per sample (float32, NaN until observed; 4 bytes per sample), seven float64
sums per epoch (and per class), and the kept sums per epoch and loss bin, folded at the epoch's update from
the observations every rank gathered, so every rank holds the same readings; checkpointed with the datamodule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_ted.core.state import first_occurrence

_KEPT_SUM, _KEPT_N, _PRUNED_SUM, _RETURNED_N, _OUT_EPOCHS, _LOSS_SUM, _LOSS_N = range(7)
_COLUMNS = 7
#: edges of the previous-loss bins the pruned reading is matched on (below 1e-4 and above 100 are bins too).
LOSS_BINS = torch.logspace(-4, 2, 31, dtype=torch.float64)
MAX_CLASSES = 100  # per-class readings for at most this many classes (as the kept fraction per class)


@dataclass(frozen=True)
class GeneralizationReading:
    """The readings of one epoch, or pooled over several (``nan`` where nothing was observed).

    >>> r = GeneralizationReading(epoch=3, kept_loss_change=-0.2, pruned_loss_change=-0.05,
    ...                           kept_samples=400, returned_samples=300, out_epochs=300)
    >>> round(r.ratio, 2), round(r.gap, 2)
    (0.25, 0.15)
    """

    epoch: int
    kept_loss_change: float
    pruned_loss_change: float
    kept_samples: int
    returned_samples: int
    out_epochs: int
    #: mean loss the epoch observed (every trained sample, before its step)
    loss_level: float = math.nan

    @property
    def ratio(self) -> float:
        """Pruned over kept loss change: 1 = the pruned samples improved as fast as the kept ones, 0 = not at
        all, below 0 = they got worse. ``nan`` unless the kept loss fell (a ratio of rises says nothing)."""
        kept, pruned = self.kept_loss_change, self.pruned_loss_change
        if not (kept < 0) or math.isnan(pruned):
            return math.nan
        return pruned / kept

    @property
    def gap(self) -> float:
        """Pruned minus kept loss change per epoch: what sitting an epoch out cost a sample, in loss."""
        return self.pruned_loss_change - self.kept_loss_change

    @property
    def relative_gap(self) -> float:
        """:attr:`gap` over the loss level: the cost of sitting out as a share of the loss still to lose."""
        return self.gap / self.loss_level if self.loss_level > 0 else math.nan

    def log_values(self) -> dict[str, float]:
        """``ig/*`` scalars for the loggers (finite ones only, so no logger receives a NaN)."""
        values = {
            "ig/kept_loss_change": self.kept_loss_change,
            "ig/pruned_loss_change": self.pruned_loss_change,
            "ig/ratio": self.ratio,
            "ig/gap": self.gap,
            "ig/relative_gap": self.relative_gap,
            "ig/loss_level": self.loss_level,
            "ig/returned_samples": float(self.returned_samples),
        }
        return {k: v for k, v in values.items() if math.isfinite(v)}


class GeneralizationMeter:
    """Per-epoch loss changes of kept and returning samples, from the losses training already observes.

    Args:
        num_samples: size of the training set.
        labels: each sample's integer class (negative: none), for the per-class readings; ``None`` (or more
            than ``MAX_CLASSES`` classes): none.

    Raises:
        ValueError: ``num_samples < 1``, or ``labels`` not one per sample.

    >>> import torch
    >>> meter = GeneralizationMeter(4)
    >>> never = torch.full((4,), -1, dtype=torch.int32)
    >>> meter.observe(torch.arange(4), torch.tensor([2.0, 2.0, 2.0, 2.0]), never, epoch=0)
    >>> meter.observe(torch.tensor([0, 1]), torch.tensor([1.5, 1.7]), torch.zeros(4, dtype=torch.int32), epoch=1)
    >>> round(meter.reading(1).kept_loss_change, 4)  # samples 0 and 1: -0.5 and -0.3
    -0.4
    """

    def __init__(self, num_samples: int, labels: Tensor | None = None) -> None:
        if num_samples < 1:
            raise ValueError(f"the training set is empty (num_samples={num_samples}); nothing to measure")
        if labels is not None and labels.shape != (num_samples,):
            raise ValueError(f"labels must hold one class per sample ({num_samples}), got shape {tuple(labels.shape)}")
        self.num_samples = int(num_samples)
        self.last_loss = torch.full((self.num_samples,), math.nan, dtype=torch.float32)
        self.sums = torch.zeros((0, _COLUMNS), dtype=torch.float64)  # per epoch: see the _KEPT_SUM... columns
        self.bin_sums = torch.zeros((0, len(LOSS_BINS) + 1, 2), dtype=torch.float64)  # kept (sum, n) per loss bin
        classes = int(labels.max()) + 1 if labels is not None and labels.numel() else 0
        self.labels = labels.long() if 0 < classes <= MAX_CLASSES else None
        self.class_sums = torch.zeros((0, classes if self.labels is not None else 0, _COLUMNS), dtype=torch.float64)

    def _grow(self, epoch: int) -> None:
        if epoch >= self.sums.shape[0]:
            grown = torch.zeros((epoch + 1, _COLUMNS), dtype=torch.float64)
            grown[: self.sums.shape[0]] = self.sums
            self.sums = grown
            bins = torch.zeros((epoch + 1, *self.bin_sums.shape[1:]), dtype=torch.float64)
            bins[: self.bin_sums.shape[0]] = self.bin_sums
            self.bin_sums = bins
            classes = torch.zeros((epoch + 1, *self.class_sums.shape[1:]), dtype=torch.float64)
            classes[: self.class_sums.shape[0]] = self.class_sums
            self.class_sums = classes

    def kept_rate_by_bin(self) -> Tensor:
        """Kept loss change per epoch and previous-loss bin (``nan`` where no kept sample fell in the bin)."""
        total, n = self.bin_sums[..., 0], self.bin_sums[..., 1]
        return torch.where(n > 0, total / n.clamp_min(1), math.nan)

    def observe(self, index: Tensor, loss: Tensor, last_epoch: Tensor, epoch: int) -> None:
        """Fold one batch of gathered observations of ``epoch`` into its sums, before the score state records
        the visit (``last_epoch``: each sample's previous epoch, -1 = never). Index -1 and repeats of a sample
        (DDP padding) are skipped; a sample seen earlier in the same epoch adds nothing."""
        self._grow(epoch)
        valid = index >= 0
        idx, loss = index[valid].to(torch.int64), loss[valid].to(torch.float32)
        if idx.numel() == 0:
            return
        idx, loss = first_occurrence(idx, loss, self.num_samples)
        prev = last_epoch[idx].to(torch.int64)
        before = self.last_loss[idx].double()
        delta = loss.double() - before
        known = (prev >= 0) & (prev < epoch) & torch.isfinite(delta)
        gap = epoch - prev
        kept = known & (gap == 1)
        row = self.sums[epoch]
        row[_LOSS_SUM] += loss.double().sum()
        row[_LOSS_N] += loss.numel()
        row[_KEPT_SUM] += delta[kept].sum()
        row[_KEPT_N] += kept.sum()
        bins = torch.bucketize(before.nan_to_num(0.0), LOSS_BINS)
        self.bin_sums[epoch, :, 0].index_add_(0, bins[kept], delta[kept])
        self.bin_sums[epoch, :, 1].index_add_(0, bins[kept], torch.ones_like(delta[kept]))
        back = known & (gap >= 2)
        # the returning sample's first epoch as a kept sample of the same previous loss had it
        own_step = self.kept_rate_by_bin()[(prev + 1).clamp(0, epoch), bins]
        back &= torch.isfinite(own_step)
        row[_PRUNED_SUM] += (delta - own_step)[back].sum()
        row[_RETURNED_N] += back.sum()
        row[_OUT_EPOCHS] += (gap - 1)[back].sum()
        if self.labels is not None:
            self._fold_classes(epoch, idx, loss, delta - own_step, gap, kept, back, delta)
        self.last_loss[idx] = loss

    def _fold_classes(
        self, epoch: int, idx: Tensor, loss: Tensor, out: Tensor, gap: Tensor, kept: Tensor, back: Tensor, delta: Tensor
    ) -> None:
        """The row's seven sums per class of the samples (one ``index_add_``)."""
        parts = torch.zeros((idx.numel(), _COLUMNS), dtype=torch.float64)
        parts[:, _LOSS_SUM], parts[:, _LOSS_N] = loss.double(), 1.0
        parts[:, _KEPT_SUM], parts[:, _KEPT_N] = torch.where(kept, delta, 0.0), kept.double()
        parts[:, _PRUNED_SUM] = torch.where(back, out, 0.0)
        parts[:, _RETURNED_N], parts[:, _OUT_EPOCHS] = back.double(), torch.where(back, gap - 1, 0).double()
        label = self.labels[idx]
        has = label >= 0
        self.class_sums[epoch].index_add_(0, label[has], parts[has])

    def _reading(self, sums: Tensor, epoch: int) -> GeneralizationReading:
        kept_n, out, seen = float(sums[_KEPT_N]), float(sums[_OUT_EPOCHS]), float(sums[_LOSS_N])
        return GeneralizationReading(
            epoch=epoch,
            loss_level=float(sums[_LOSS_SUM]) / seen if seen else math.nan,
            kept_loss_change=float(sums[_KEPT_SUM]) / kept_n if kept_n else math.nan,
            pruned_loss_change=float(sums[_PRUNED_SUM]) / out if out else math.nan,
            kept_samples=int(kept_n),
            returned_samples=int(sums[_RETURNED_N]),
            out_epochs=int(out),
        )

    def reading(self, epoch: int) -> GeneralizationReading:
        """The readings of ``epoch`` (all ``nan`` before it was observed)."""
        if epoch >= self.sums.shape[0] or epoch < 0:
            return self._reading(torch.zeros(_COLUMNS, dtype=torch.float64), epoch)
        return self._reading(self.sums[epoch], epoch)

    def class_readings(self, epoch: int) -> list[GeneralizationReading]:
        """The readings of ``epoch`` per class (empty without labels)."""
        if epoch < 0 or epoch >= self.class_sums.shape[0]:
            return [self._reading(torch.zeros(_COLUMNS, dtype=torch.float64), epoch)] * self.class_sums.shape[1]
        return [self._reading(row, epoch) for row in self.class_sums[epoch]]

    def class_log_values(self, epoch: int) -> dict[str, float]:
        """``ig/ratio/class_<c>`` and ``ig/gap/class_<c>`` of ``epoch`` (finite ones only)."""
        values = {}
        for c, reading in enumerate(self.class_readings(epoch)):
            values[f"ig/ratio/class_{c}"], values[f"ig/gap/class_{c}"] = reading.ratio, reading.gap
        return {k: v for k, v in values.items() if math.isfinite(v)}

    def pooled(self, first: int = 0, last: int | None = None) -> GeneralizationReading:
        """Epochs ``first..last`` pooled, each side's summed change over its summed count, over the epochs that
        have both readings only (so both sides cover the same epochs); ``epoch`` holds how many were pooled."""
        last = self.sums.shape[0] - 1 if last is None else last
        rows = self.sums[max(0, first) : last + 1]
        both = rows[(rows[:, _RETURNED_N] > 0) & (rows[:, _KEPT_N] > 0)]
        return self._reading(both.sum(dim=0) if len(both) else torch.zeros(_COLUMNS, dtype=torch.float64), len(both))

    def summary_values(self) -> dict[str, float]:
        """``summary/ig_*``: the whole run pooled (:meth:`pooled`), for the end-of-fit summary (empty without
        returns)."""
        run = self.pooled()
        if run.returned_samples == 0:
            return {}
        values = {
            "summary/ig_epochs": float(run.epoch),
            "summary/ig_kept_loss_change": run.kept_loss_change,
            "summary/ig_pruned_loss_change": run.pruned_loss_change,
            "summary/ig_ratio": run.ratio,
        }
        return {k: v for k, v in values.items() if math.isfinite(v)}

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        return {
            "num_samples": self.num_samples,
            "last_loss": self.last_loss.clone(),
            "sums": self.sums.clone(),
            "bin_sums": self.bin_sums.clone(),
            "class_sums": self.class_sums.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["num_samples"]) != self.num_samples:
            raise ValueError(
                f"the checkpoint's generalization readings are for {state['num_samples']} samples but this training "
                f"set has {self.num_samples}; resume with the dataset the checkpoint was trained on."
            )
        self.last_loss.copy_(state["last_loss"])
        self.sums = state["sums"].clone().to(torch.float64)
        self.bin_sums = state["bin_sums"].clone().to(torch.float64)
        # absent from checkpoints written before the per-class readings: the past epochs' class rows stay zero, and
        # each later epoch's class readings are exact (they need only that epoch's rows and the kept bins)
        saved = state.get("class_sums")
        rows, classes = self.sums.shape[0], self.class_sums.shape[1]
        if saved is not None and saved.shape[1] == classes:
            self.class_sums = saved.clone().to(torch.float64)
        else:  # no per-class sums to resume: they count from here
            self.class_sums = torch.zeros((rows, classes, _COLUMNS), dtype=torch.float64)
