"""The summary printed at the end of every pruned ``fit`` (rank zero), and logged as ``summary/*`` scalars.

What pruning bought in this fit: sample-passes saved, optimizer steps against the full data's, wall time,
and the speedup: the training time a full-data run would have taken over the training time spent
(validation excluded). The full-data time is estimated from the run's own full-data epochs: the first
epoch as it was (it carries one-time start-up costs a full-data run pays too) and every other epoch at
the pace of the later full-data epochs (anneal), per sample; with no later full-data epoch, every epoch
at the first epoch's pace (then the start-up cost counts in every epoch and the speedup reads high). Then the share of
samples never dropped and always dropped over the epochs that dropped any, per class where the training
set exposes labels. Counts are O(N) tensors updated once per epoch; nothing runs on the step path.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from lightning_ted.loader import batches_per_rank, limited_batches, trained_samples


class FitSummary:
    """Per-fit timings and per-sample drop counts, reported by :meth:`report` when training ends.

    ``values`` holds the last report's numbers (the same keys the loggers receive).

    >>> FitSummary().values
    {}
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the previous fit."""
        self.values: dict[str, float] = {}
        self._fit_start = 0.0
        self._epoch_start: float | None = None
        self._eval_start: float | None = None
        self._times: dict[int, float] = {}  # training seconds per epoch (validation excluded)
        self._trained: dict[int, int] = {}  # samples each epoch loaded
        self._first_step = 0
        self._times_trained: Tensor | None = None  # per sample: pruned epochs that trained it
        self._pruned_epochs = 0

    # ------------------------------------------------------------------ hooks (called by the callback)
    def fit_start(self, trainer: Any) -> None:
        self.reset()
        self._fit_start = time.perf_counter()
        self._first_step = trainer.global_step

    def epoch_start(self, trainer: Any, dm: Any) -> None:
        _sync(trainer)
        self._epoch_start = time.perf_counter()
        epoch, sel, n = trainer.current_epoch, dm.trained_selection, dm.state.num_samples
        if sel is None:
            return
        self._trained[epoch] = len(sel)
        if len(sel) < n:  # an epoch that dropped samples: count who it trained
            if self._times_trained is None:
                self._times_trained = torch.zeros(n, dtype=torch.int32)
            self._times_trained.index_add_(0, sel.indices.cpu(), torch.ones(len(sel), dtype=torch.int32))
            self._pruned_epochs += 1

    def eval_start(self, trainer: Any) -> None:
        if self._epoch_start is not None and not trainer.sanity_checking:
            _sync(trainer)
            self._eval_start = time.perf_counter()

    def eval_end(self, trainer: Any) -> None:
        if self._eval_start is not None and self._epoch_start is not None:
            _sync(trainer)
            self._epoch_start += time.perf_counter() - self._eval_start  # validation is not training time
            self._eval_start = None

    def epoch_end(self, trainer: Any) -> None:
        if self._epoch_start is not None:
            _sync(trainer)
            self._times[trainer.current_epoch] = time.perf_counter() - self._epoch_start
            self._epoch_start = None

    def report(self, trainer: Any, dm: Any, labels: Tensor | None) -> dict[str, float]:
        """Compute the summary, log it to every logger and print it on rank zero; returns the values."""
        epochs = sorted(e for e in self._times if e in self._trained)
        if not epochs or dm.state is None:
            return {}
        n = dm.state.num_samples
        values = self._passes_and_steps(trainer, dm, epochs, n)
        values.update(self._drop_shares(labels))
        self.values = values
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)
        _print(trainer, format_summary(values, dm.method.name, epochs, n))
        return values

    # ------------------------------------------------------------------ the numbers
    def _passes_and_steps(self, trainer: Any, dm: Any, epochs: list[int], n: int) -> dict[str, float]:
        world, batch_size = trainer.world_size, dm.batch_size or 1
        full_batches = limited_batches(
            batches_per_rank(n, world, batch_size, bool(dm.drop_last)), trainer.limit_train_batches
        )
        full_samples = trained_samples(n, full_batches, world, batch_size)  # what a full-data epoch loads
        trained = sum(self._trained[e] for e in epochs)
        seconds = sum(self._times[e] for e in epochs)
        full = [e for e in epochs if self._trained[e] >= full_samples]
        first = epochs[0]
        # the first epoch carries one-time costs (worker start-up, first-step checks): a full-data run would
        # have paid them too, so when it trained the full data it counts as it was, the rest at the other
        # full-data epochs' pace; with no other full-data epoch, everything at the first epoch's pace
        steady = [e for e in full if e != first]
        timed = steady or [first]
        per_sample = sum(self._times[e] for e in timed) / max(1, sum(self._trained[e] for e in timed))
        if steady and first in full:
            estimate = self._times[first] + per_sample * full_samples * (len(epochs) - 1)
        else:
            estimate = per_sample * full_samples * len(epochs)
        saved = full_samples * len(epochs) - trained
        return {
            "summary/epochs": float(len(epochs)),
            "summary/sample_passes": float(trained),
            "summary/saved_sample_passes": float(saved),
            "summary/saved_fraction": saved / max(1, full_samples * len(epochs)),
            "summary/optimizer_steps": float(trainer.global_step - self._first_step),
            "summary/full_data_optimizer_steps": float(
                len(epochs) * math.ceil(full_batches / trainer.accumulate_grad_batches)
            ),
            "summary/wall_seconds": time.perf_counter() - self._fit_start,
            "summary/train_seconds": seconds,
            "summary/full_data_seconds_per_sample": per_sample,
            "summary/full_data_seconds": estimate,
            "summary/speedup": estimate / seconds if seconds > 0 else math.nan,
        }

    def _drop_shares(self, labels: Tensor | None) -> dict[str, float]:
        counts = self._times_trained
        if counts is None:
            return {"summary/pruned_epochs": 0.0}
        never = counts == self._pruned_epochs
        always = counts == 0
        out = {
            "summary/pruned_epochs": float(self._pruned_epochs),
            "summary/never_dropped": float(never.float().mean()),
            "summary/always_dropped": float(always.float().mean()),
        }
        if labels is not None and labels.numel() == counts.numel():
            labels = labels.cpu().long()
            size = torch.bincount(labels).clamp(min=1).double()
            for name, mask in (("never_dropped", never), ("always_dropped", always)):
                share = torch.bincount(labels[mask], minlength=size.numel()).double() / size
                present = torch.bincount(labels, minlength=size.numel()) > 0
                for c in torch.nonzero(present).flatten().tolist():
                    out[f"summary/{name}/class_{c}"] = float(share[c])
        return out


def format_summary(values: dict[str, float], method: str, epochs: list[int], n: int) -> str:
    """The printed summary: one line per quantity, per-class shares on their own lines."""
    v = values
    span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
    full = v["summary/sample_passes"] + v["summary/saved_sample_passes"]
    ideal = 1.0 / (1.0 - v["summary/saved_fraction"]) if v["summary/saved_fraction"] < 1 else math.inf
    lines = [
        f"lightning-ted fit summary ({method}, {span}, {n} samples)",
        f"  sample-passes saved  {v['summary/saved_sample_passes']:.0f} of {full:.0f} "
        f"({100 * v['summary/saved_fraction']:.1f}%)",
        f"  optimizer steps      {v['summary/optimizer_steps']:.0f} (full data: "
        f"{v['summary/full_data_optimizer_steps']:.0f})",
        f"  wall time            {v['summary/wall_seconds']:.1f} s (training {v['summary/train_seconds']:.1f} s)",
        f"  speedup              {v['summary/speedup']:.2f}x (ideal {ideal:.2f}x): full data would take "
        f"{v['summary/full_data_seconds']:.1f} s at {1e3 * v['summary/full_data_seconds_per_sample']:.3g} ms/sample",
    ]
    if v.get("summary/pruned_epochs", 0) > 0:
        for name, label in (("never_dropped", "never dropped"), ("always_dropped", "always dropped")):
            lines.append(
                f"  {label:<20} {100 * v[f'summary/{name}']:.1f}% of samples "
                f"(over {v['summary/pruned_epochs']:.0f} pruning epochs)"
            )
            per_class = [(k.rsplit("_", 1)[-1], x) for k, x in v.items() if k.startswith(f"summary/{name}/class_")]
            for start in range(0, len(per_class), 8):
                chunk = ", ".join(f"{c}: {100 * x:.0f}%" for c, x in per_class[start : start + 8])
                lines.append(f"    class {chunk}")
    else:
        lines.append("  no epoch dropped samples (never/always dropped shares need a pruning epoch)")
    return "\n".join(lines)


def _sync(trainer: Any) -> None:
    """Wait for queued GPU work so epoch times are wall times (once per epoch boundary, never per step)."""
    root = getattr(getattr(trainer, "strategy", None), "root_device", None)
    if root is not None and root.type == "cuda":
        torch.cuda.synchronize(root)


@rank_zero_only
def _print(trainer: Any, text: str) -> None:
    bar = getattr(trainer, "progress_bar_callback", None)
    if bar is not None and hasattr(bar, "print"):
        bar.print(text)  # writes above a live progress bar instead of through it
    else:
        print(text)
