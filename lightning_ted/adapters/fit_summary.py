"""The summary printed at the end of every pruned ``fit`` (rank zero), and logged as ``summary/*`` scalars.

What pruning bought over the run: sample-passes saved, training batches and optimizer steps against a full-data run's
over the same span, wall time, and the speedup: the training time a full-data run would have taken over the training
time spent (validation excluded). The full-data time is estimated from the run's own full-data epochs: the first
epoch as it was (it carries one-time start-up costs a full-data run pays too) and every other epoch at the pace of
the later full-data epochs (anneal), per sample; with no later full-data epoch, every epoch at the first epoch's pace
(then the start-up cost counts in every epoch and the speedup reads high). Then the share of samples never dropped
and always dropped over the complete epochs that dropped any, per class where the training set exposes labels (a
negative label, such as an ``ignore_index``, is in no class and is counted apart).

The counts are the whole run's, whichever fits it took: the callback's checkpoint carries them (with the epoch in
progress, so a run resumed in an epoch's middle counts that epoch whole). A checkpoint without them (written with
``summary=False`` or by an older version) leaves the earlier epochs unknown: the summary then says that it counts
from the resumed position on. An epoch cut short (``max_steps``, ``should_stop``) counts what it trained, and the
full-data run it is compared with stops at the same share of that epoch.

Optimizer steps are Lightning's ``global_step``, which under manual optimization counts every optimizer's ``step()``;
the full-data count then takes this run's steps per batch. Per-epoch records and one small per-sample count tensor
are updated at epoch boundaries; nothing runs on the step path.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from lightning_ted.adapters.data_source import PruningDataSource
from lightning_ted.adapters.fit_start import starts_fresh
from lightning_ted.data.loader import batches_per_rank, limited_batches, trained_samples
from lightning_ted.data.spec import TrainData
from lightning_ted.observe.summary_counts import EpochRecord, drop_shares
from lightning_ted.observe.summary_text import format_summary, print_summary, sync_device


class FitSummary:
    """Per-run timings and per-sample drop counts, reported by :meth:`report` when training ends.

    ``values`` holds the last report's numbers (the same keys the loggers receive).

    >>> FitSummary().values
    {}
    """

    def __init__(self) -> None:
        self._restored: dict[str, Any] | None = None  # the checkpoint's counts, applied when training starts
        self.reset()

    def reset(self) -> None:
        """Forget the previous fit (not a checkpoint's counts waiting to be applied)."""
        self.values: dict[str, float] = {}
        self._fit_start = time.perf_counter()
        self._epoch_start: float | None = None
        self._eval_start: float | None = None
        self._records: dict[int, EpochRecord] = {}  # finished epochs
        self._open: EpochRecord | None = None  # the epoch in progress
        self._times_trained: Tensor | None = None  # per sample: complete pruned epochs that kept it
        self._pruned_epochs = 0
        self._whole_run = True  # False: resumed from a checkpoint without summary counts
        self._resumed_at: int | None = None  # epoch this fit resumed in

    # ------------------------------------------------------------------ hooks (called by the callback)
    def fit_start(self, trainer: Any) -> None:
        """A fit starts: a new run, or a resume from a checkpoint, forgets the counts held; a further ``fit``
        of the same Trainer goes on with them (the same run)."""
        if trainer.ckpt_path is not None or starts_fresh(trainer):
            self.reset()
        else:
            self.values, self._fit_start, self._resumed_at = {}, time.perf_counter(), None

    def train_start(self, trainer: Any, dm: PruningDataSource) -> None:
        """Training is about to run, every state restored: take over a checkpoint's counts, or note that the
        fit resumed without them; an epoch resumed in its middle goes on counting from where it was."""
        resumed = trainer.global_step > 0 or trainer.current_epoch > 0
        restored, self._restored = self._restored, None
        if restored is not None:
            self._load(restored)
        elif resumed and not self._records:
            self._whole_run = False
        if not resumed or (restored is None and self._records):  # not resumed, or this Trainer's run goes on
            return
        self._resumed_at = epoch = trainer.current_epoch
        if self._open is not None and self._open.epoch != epoch:
            self._close(self._open, dm)  # saved after its last batch, before its end hooks (not rerun)
        mid_epoch = dm is not None and (dm.run.begun_epoch, dm.run.trained_selection is not None) == (epoch, True)
        if not mid_epoch:
            self._open = None
            return
        sync_device(trainer)
        if self._open is None:  # no counts for the epoch's first part: count from here
            batches = dm.run.cursor.batches if dm.run.cursor is not None else 0
            self._open = self._record(trainer, dm, batches_before=batches)
            self._open.batches = batches
        self._epoch_start = time.perf_counter() - self._open.seconds

    def epoch_start(self, trainer: Any, dm: PruningDataSource) -> None:
        sync_device(trainer)
        self._epoch_start = time.perf_counter()
        self._open = self._record(trainer, dm) if dm.run.trained_selection is not None else None
        sel, n = dm.run.current_selection, dm.run.state.num_samples
        if self._open is not None and sel is not None and len(sel) < n:  # a pruning epoch: count who it keeps
            self._count(sel, n, 1)
            self._open.counted = True

    def eval_start(self, trainer: Any) -> None:
        if self._epoch_start is not None and not trainer.sanity_checking:
            sync_device(trainer)
            self._eval_start = time.perf_counter()

    def eval_end(self, trainer: Any) -> None:
        if self._eval_start is not None and self._epoch_start is not None:
            sync_device(trainer)
            self._epoch_start += time.perf_counter() - self._eval_start  # validation is not training time
            self._eval_start = None

    def epoch_end(self, trainer: Any, dm: PruningDataSource) -> None:
        if self._open is None or self._epoch_start is None:
            return
        sync_device(trainer)
        self._update(self._open, trainer, dm)
        self._close(self._open, dm)
        self._open, self._epoch_start = None, None

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self, trainer: Any, dm: PruningDataSource) -> dict[str, Any]:
        """The counts so far, the epoch in progress with its progress, for the callback's checkpoint."""
        open_ = None
        if self._open is not None and trainer is not None and self._epoch_start is not None:
            self._update(self._open, trainer, dm)
            open_ = asdict(self._open)
        counts = self._times_trained
        if counts is not None:  # one byte per sample while fewer than 256 pruned epochs
            dtype = torch.uint8 if self._pruned_epochs < 256 else torch.int16 if self._pruned_epochs < 2**15 else None
            counts = counts.clone() if dtype is None else counts.to(dtype)
        return {
            "records": [asdict(r) for r in self._records.values()],
            "open": open_,
            "times_trained": counts,
            "pruned_epochs": self._pruned_epochs,
            "whole_run": self._whole_run,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep a checkpoint's counts until training starts (Lightning restores callbacks before ``on_fit_start``)."""
        self._restored = dict(state)

    def _load(self, state: dict[str, Any]) -> None:
        self._records = {int(r["epoch"]): EpochRecord(**r) for r in state.get("records", [])}
        self._open = EpochRecord(**state["open"]) if state.get("open") else None
        counts = state.get("times_trained")
        self._times_trained = None if counts is None else counts.to(torch.int32)
        self._pruned_epochs = int(state.get("pruned_epochs", 0))
        self._whole_run = bool(state.get("whole_run", True))

    # ------------------------------------------------------------------ records
    def _record(self, trainer: Any, dm: PruningDataSource, batches_before: int = 0) -> EpochRecord:
        kept = dm.run.current_selection if dm.run.current_selection is not None else dm.run.trained_selection
        return EpochRecord(
            trainer.current_epoch, len(dm.run.trained_selection), len(kept), trainer.global_step, batches_before
        )

    def _update(self, record: EpochRecord, trainer: Any, dm: PruningDataSource) -> None:
        """Bring ``record`` (the epoch in progress) up to now: batches, steps, seconds."""
        now = self._eval_start if self._eval_start is not None else time.perf_counter()
        record.seconds = now - self._epoch_start
        record.steps = trainer.global_step - record.first_step
        cursor = getattr(dm, "cursor", None)
        if cursor is not None and cursor.epoch == record.epoch:
            record.batches = cursor.batches
        planned = trainer.num_training_batches
        record.planned_batches = int(planned) if math.isfinite(planned) else record.batches
        record.complete = record.batches >= record.planned_batches

    def _close(self, record: EpochRecord, dm: PruningDataSource) -> None:
        """File a finished epoch; one cut short leaves the per-sample counts (they cover complete epochs)."""
        self._records[record.epoch] = record
        cursor = getattr(dm, "cursor", None)
        if record.counted and not record.complete and cursor is not None and cursor.epoch == record.epoch:
            self._count(dm.run.current_selection, dm.run.state.num_samples, -1)
            record.counted = False

    def _count(self, sel: Any, n: int, sign: int) -> None:
        """Add (``sign`` 1) or take back (-1) a pruning epoch's kept set in the per-sample counts."""
        if self._times_trained is None:
            self._times_trained = torch.zeros(n, dtype=torch.int32)
        self._times_trained.index_add_(0, sel.indices.cpu(), torch.full((len(sel),), sign, dtype=torch.int32))
        self._pruned_epochs += sign

    # ------------------------------------------------------------------ the report
    def report(self, trainer: Any, dm: PruningDataSource, labels: Tensor | None) -> dict[str, float]:
        """Compute the summary, log it to every logger and print it on rank zero; returns the values."""
        if self._restored is not None:  # training never started (the run was already done): take the counts
            self.train_start(trainer, dm)
        if self._open is not None and self._epoch_start is not None:  # ended without its epoch-end hooks
            self.epoch_end(trainer, dm)
        records = [self._records[e] for e in sorted(self._records)]
        if not records or dm.run.state is None:
            return {}
        n = dm.run.state.num_samples
        values = self._passes_and_steps(trainer, dm.train_data(), records, n)
        values.update(self._drop_shares(labels))
        values.update(dm.run.generalization.summary_values() if dm.run.generalization is not None else {})
        self.values = values
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)
        notes = self._notes(trainer, dm, records)
        partial = self._resumed_at is not None or not self._whole_run  # wall time is this fit's, not the run's
        print_summary(trainer, format_summary(values, dm.run.method.name, sorted(self._records), n, notes, partial))
        return values

    def _notes(self, trainer: Any, dm: PruningDataSource, records: list[EpochRecord]) -> list[str]:
        """What the printed span is: resumed, counted from a resume on, epochs cut short."""
        batch_size, world = dm.train_data().batch_size or 1, trainer.world_size
        notes = []
        if not self._whole_run:
            notes.append(
                "counted from the resume on: the checkpoint carried no summary counts (saved with summary=False "
                "or by an older lightning-ted), so the epochs before it are left out"
            )
        elif self._resumed_at is not None:
            notes.append(f"the whole run, resumed from a checkpoint in epoch {self._resumed_at}")
        for r in records:
            if r.batches_before:
                notes.append(
                    f"epoch {r.epoch} counted from {100 * r.batches_before / max(1, r.planned_batches):.0f}% on"
                )
            if not r.complete:
                notes.append(
                    f"epoch {r.epoch} stopped after {100 * r.share(batch_size, world):.0f}% of its samples "
                    "(max_steps or should_stop); full data compared over the same share"
                )
        if not trainer.lightning_module.automatic_optimization:
            steps, batches = sum(r.steps for r in records), sum(r.batches - r.batches_before for r in records)
            notes.append(
                "manual optimization: optimizer steps are Lightning's global_step, every optimizer's step() counted "
                f"({steps / max(1, batches):.3g} per batch; the full-data count at the same rate)"
            )
        return notes

    def _passes_and_steps(self, trainer: Any, data: TrainData, records: list[EpochRecord], n: int) -> dict[str, float]:
        world, batch_size = trainer.world_size, data.batch_size or 1
        full_batches = limited_batches(
            batches_per_rank(n, world, batch_size, bool(data.drop_last)), trainer.limit_train_batches
        )
        full_samples = trained_samples(n, full_batches, world, batch_size)  # what a full-data epoch loads
        trained = {r.epoch: r.samples(batch_size, world) for r in records}
        # a full-data run over the same span: whole epochs, and the same share of an epoch cut short
        span = {r.epoch: round(full_samples * r.share(batch_size, world)) for r in records}
        span_batches = {
            r.epoch: full_batches if span[r.epoch] >= full_samples else math.ceil(span[r.epoch] / (batch_size * world))
            for r in records
        }
        batches = sum(r.batches - r.batches_before for r in records)
        steps = sum(r.steps for r in records)
        if trainer.lightning_module.automatic_optimization:
            accumulate = trainer.accumulate_grad_batches
            full_steps = float(sum(math.ceil(b / accumulate) for b in span_batches.values()))
        else:  # Lightning counts each optimizer's step(): a full-data run at this run's steps per batch
            full_steps = float(round(sum(span_batches.values()) * steps / max(1, batches)))
        seconds = sum(r.seconds for r in records)
        full = [r.epoch for r in records if r.planned >= full_samples and r.complete and not r.batches_before]
        first = records[0].epoch
        # the first epoch carries one-time costs (worker start-up, first-step checks): a full-data run would
        # have paid them too, so when it trained the full data it counts as it was, the rest at the other
        # full-data epochs' pace; with no other full-data epoch, everything at the first epoch's pace
        steady = [e for e in full if e != first]
        timed = steady or [first]
        by_epoch = {r.epoch: r for r in records}
        per_sample = sum(by_epoch[e].seconds for e in timed) / max(1, sum(trained[e] for e in timed))
        total_span = sum(span.values())
        if steady and first in full:
            estimate = by_epoch[first].seconds + per_sample * (total_span - span[first])
        else:
            estimate = per_sample * total_span
        passes = sum(trained.values())
        saved = total_span - passes
        return {
            "summary/epochs": float(len(records)),
            "summary/whole_run": float(self._whole_run),
            "summary/sample_passes": float(passes),
            "summary/saved_sample_passes": float(saved),
            "summary/saved_fraction": saved / max(1, total_span),
            "summary/training_batches": float(batches),
            "summary/full_data_training_batches": float(sum(span_batches.values())),
            "summary/optimizer_steps": float(steps),
            "summary/full_data_optimizer_steps": full_steps,
            "summary/wall_seconds": time.perf_counter() - self._fit_start,
            "summary/train_seconds": seconds,
            "summary/full_data_seconds_per_sample": per_sample,
            "summary/full_data_seconds": estimate,
            "summary/speedup": estimate / seconds if seconds > 0 else math.nan,
        }

    def _drop_shares(self, labels: Tensor | None) -> dict[str, float]:
        return drop_shares(self._times_trained, self._pruned_epochs, labels)
