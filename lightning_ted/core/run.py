"""``PruningRun``: the one owner of a pruning run, with no Lightning in it.

It holds the score state, the method and the schedule, decides each epoch's kept set, keeps the epoch
bookkeeping (samples trained per epoch, the epoch begun, the position reached in it) and writes and reads the
whole pruning checkpoint. The Lightning adapters (``adapters/``) only translate hooks into calls on it: the
datamodule hands it the dataset size, the Trainer's limits and an all-gather; the callback hands it the
observations of each step through :attr:`state`.
"""

from __future__ import annotations

import math
from copy import copy
from typing import Any

import torch
from torch import Tensor

from lightning_ted.core.collective import Collective
from lightning_ted.core.generalization import GeneralizationMeter
from lightning_ted.core.method import PruningMethod
from lightning_ted.core.resume import EpochCursor, interrupted_epoch, restore_interrupted
from lightning_ted.core.schedules import PruneSchedule
from lightning_ted.core.selection import Selection, epoch_generator
from lightning_ted.core.state import Observations, ScoreState, gather_observations


class PruningRun:
    """Score state, method, schedule and epoch bookkeeping of one pruning run, and its checkpoint.

    Each epoch's kept set is a pure function of (scores, epoch, seed), so every rank and every resumed run
    draws the same one; a checkpoint written inside an epoch keeps that epoch's selection and position.

    Args:
        method: the pruning method (scores in, kept set and weights out).
        schedule: the pruning ratio of each epoch.
        seed: seeds the selection and the epoch's order through ``(seed, epoch)``.

    Examples:
        >>> from lightning_ted import ConstantSchedule, RandomSubset
        >>> run = PruningRun(RandomSubset(), ConstantSchedule(ratio=0.25, warmup_epochs=0, anneal=0.0), seed=0)
        >>> run.allocate(100)
        >>> run.configure(max_epochs=2, quantum=10)
        >>> selection, cursor = run.epoch_to_load(0, overfitting=False)
        >>> len(selection), cursor.epoch
        (75, 0)
        >>> run.loaded(selection, cursor)
        >>> run.record_epoch(0)
        >>> run.kept_history.tolist()
        [75, 0]
    """

    def __init__(self, method: PruningMethod, schedule: PruneSchedule, seed: int = 0) -> None:
        self.method, self.schedule, self.seed = method, schedule, int(seed)
        self.reset()

    def reset(self) -> None:
        """Forget everything a previous run learnt (a fresh fit); the method, schedule and seed stay."""
        self.state: ScoreState | None = None
        self.generalization: GeneralizationMeter | None = None  # the ig/* readings (core/generalization.py)
        self.current_selection: Selection | None = None  # the epoch's kept set
        self.trained_selection: Selection | None = None  # what the epoch loads (limit_train_batches may cut it)
        self.kept_history: Tensor = torch.zeros(0, dtype=torch.int64)  # samples trained per epoch
        self.cursor: EpochCursor | None = None  # progress through the current epoch's train loader
        self.begun_epoch = -1  # last epoch whose start was recorded (see record_epoch)
        self._cache: tuple[int, int, Selection] | None = None  # (epoch, state version, selection)
        self._version = 0
        self._interrupted: tuple[EpochCursor, Selection] | None = None  # the epoch a checkpoint was written in
        self._unfolded_epoch: int | None = None  # a checkpoint's finished epoch whose observations await folding

    # ------------------------------------------------------------------ set-up
    def allocate(self, num_samples: int, labels: Tensor | None = None) -> None:
        """Create the score state and the readings for ``num_samples`` samples (per class too, given each
        sample's ``labels``), unless the run has them."""
        if self.state is None:
            self.state = ScoreState(num_samples, columns=self.method.columns)
            self.generalization = GeneralizationMeter(num_samples, labels)

    def configure(self, max_epochs: int | None, quantum: int) -> None:
        """Fit the schedule and the method to a run of ``max_epochs`` whose optimizer step takes ``quantum``
        samples (the budget schedule moves drops in whole steps); size the per-epoch history."""
        self.schedule.follow(max_epochs)
        self.method.bind(self.schedule.max_epochs)
        n = self.state.num_samples
        max_drop, exact = n - self.method.min_kept(n), self.method.exact_kept_count
        self.schedule.attach(self.generalization, n, quantum, max_drop, exact)
        self.grow_history()

    def grow_history(self) -> None:
        """Make room in :attr:`kept_history` for every epoch of the schedule."""
        epochs = self.schedule.max_epochs
        if epochs is not None and self.kept_history.numel() < epochs:
            grown = torch.zeros(epochs, dtype=torch.int64)
            grown[: self.kept_history.numel()] = self.kept_history
            self.kept_history = grown

    # ------------------------------------------------------------------ each epoch
    def selection_for(self, epoch: int) -> Selection:
        """Kept set of ``epoch``: a pure function of (scores, epoch, seed), cached per state version; the
        epoch a checkpoint interrupted keeps the selection the checkpoint holds."""
        if self._interrupted is not None and self._interrupted[0].epoch == epoch:
            return self._interrupted[1]
        if self._cache is not None and self._cache[:2] == (epoch, self._version):
            return self._cache[2]
        ratio = self.schedule.prune_ratio(epoch)
        selection = self.method.select(self.state, ratio, epoch_generator(self.seed, epoch))
        self.method.check_step_scale(selection)
        self._cache = (epoch, self._version, selection)
        return selection

    def epoch_to_load(
        self, epoch: int, overfitting: bool, collective: Collective | None = None
    ) -> tuple[Selection, EpochCursor]:
        """The selection ``epoch``'s train loader serves (all samples in order while overfitting) and the cursor
        it starts from (where a checkpoint stopped, in the epoch it interrupted). A checkpoint's finished epoch
        is folded in first."""
        if self._unfolded_epoch is not None and epoch > self._unfolded_epoch:
            self.fold_finished_epoch(collective)
        n = self.state.num_samples
        selection = Selection(torch.arange(n), n, 1.0, n) if overfitting else self.selection_for(epoch)
        self.current_selection = selection
        resume = self._interrupted is not None and self._interrupted[0].epoch == epoch
        self.cursor = copy(self._interrupted[0]) if resume else EpochCursor(epoch)
        return selection, self.cursor

    def loaded(self, trained: Selection, cursor: EpochCursor) -> None:
        """Note what the epoch's loader will train and the cursor it advances (the streamed path has its own)."""
        self.trained_selection, self.cursor = trained, cursor

    def record_epoch(self, epoch: int) -> None:
        """Note the number of samples the epoch that starts trains (once per epoch)."""
        self.begun_epoch = epoch
        if self.trained_selection is not None and epoch < self.kept_history.numel():
            self.kept_history[epoch] = len(self.trained_selection)

    def fold(self, epoch: int, collective: Collective | None = None) -> None:
        """Gather ``epoch``'s observations from every rank (one collective) and fold them into the scores."""
        restored, local = self.state.take_split()
        obs = restored.join(self._gather(local, collective))
        self.generalization.observe(obs.index, obs.loss, self.state.last_epoch, epoch)  # before the visit counts
        self.method.update(self.state, obs, epoch)
        self._version += 1

    def fold_finished_epoch(self, collective: Collective | None = None) -> None:
        """Fold in the observations of an epoch a checkpoint caught after its last batch but before its end
        hooks (Lightning does not rerun them on resume): they were gathered from every rank when saved."""
        if self._unfolded_epoch is None:
            return
        epoch, self._unfolded_epoch = self._unfolded_epoch, None
        self.fold(epoch, collective)

    def saved_fraction(self, through_epoch: int) -> float:
        """Fraction of sample-passes saved in epochs ``0..through_epoch`` compared with full data."""
        done = self.kept_history[: through_epoch + 1]
        return 1.0 - float(done.sum()) / (self.state.num_samples * (through_epoch + 1))

    def _gather(self, obs: Observations, collective: Collective | None) -> Observations:
        """Every rank's observations; ``obs`` itself on a single process."""
        if collective is None or collective.world == 1 or self.current_selection is None:
            return obs
        capacity = getattr(self.cursor, "capacity", None) or math.ceil(len(self.current_selection) / collective.world)
        return gather_observations(obs, capacity, collective.all_gather)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self, collective: Collective | None = None) -> dict[str, Any]:
        """The whole pruning state, with the selection and position of the epoch it is written in (kept after
        the epoch's last batch too: Lightning may resume that epoch without a batch and run its end hooks, which
        must see the epoch's own selection). Under DDP every rank's pending observations are gathered here."""
        out = {
            "method": self.method.state_dict(),
            "state": self.state.state_dict(all_ranks_pending=self._gather(self.state.local_pending(), collective)),
            "seed": self.seed,
            "kept_history": self.kept_history.clone(),
            "begun_epoch": self.begun_epoch,
            "generalization": self.generalization.state_dict(),
        }
        method_run = self.method.run_state_dict(collective)  # per rank (e.g. TED's reference gradients)
        if method_run:
            out["method_run"] = method_run
        sel, cursor = self.current_selection, self.cursor
        if sel is not None and cursor is not None:
            out["epoch_in_progress"] = interrupted_epoch(sel, cursor)
        if self.state.num_pending and cursor is not None and cursor.position >= len(self.trained_selection or sel):
            out["finished_epoch"] = cursor.epoch  # its observations are pending: its end hooks have not run
        return out

    def load_state_dict(self, state_dict: dict[str, Any], world: int = 1, rank: int = 0) -> bool:
        """Restore :meth:`state_dict`'s output into an allocated run, on rank ``rank`` of ``world`` (a method's
        per-rank state is stacked by rank); ``False`` when it carries no internal-generalization readings (an
        older checkpoint: the caller warns)."""
        self.method.load_state_dict(state_dict["method"])
        if "method_run" in state_dict:
            self.method.load_run_state_dict(state_dict["method_run"], world, rank)
        self.state.load_state_dict(state_dict["state"])
        self.seed = int(state_dict["seed"])
        history = state_dict["kept_history"]
        self.kept_history[: history.numel()] = history[: self.kept_history.numel()]
        self._version += 1
        self.begun_epoch = int(state_dict.get("begun_epoch", -1))
        run = state_dict.get("epoch_in_progress")
        self._interrupted = None if run is None else restore_interrupted(run, self.state.num_samples)
        self._unfolded_epoch = state_dict.get("finished_epoch")
        if "generalization" not in state_dict:
            return False
        self.generalization.load_state_dict(state_dict["generalization"])
        return True
