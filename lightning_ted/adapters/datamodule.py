"""``DynamicPruningDataModule``: owns the score state, the pruning method and the per-epoch kept set.

It wraps a map-style ``Dataset`` (or another ``LightningDataModule``). Each epoch the train loader is
rebuilt over the kept indices only; every item carries its dataset index and weight, and the batch is
unwrapped in ``on_before_batch_transfer``, before any user hook, so the user's hooks and ``training_step``
see their usual batch. Validation and test loaders are untouched.
"""

from __future__ import annotations

import math
from copy import copy
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_ted.adapters import fit_start
from lightning_ted.adapters.callback import TEDPruningCallback
from lightning_ted.adapters.checkpointing import PruningCheckpoint
from lightning_ted.adapters.compat import DATAMODULE_BASES, AnyDataModule
from lightning_ted.adapters.data_source import PruningDataSource
from lightning_ted.adapters.forwarded_hooks import ForwardedHooks
from lightning_ted.adapters.nesting import restore_own_hparams
from lightning_ted.adapters.wrapping import HookWarningScope, adopt_train_loader, call_batch_hook
from lightning_ted.core import run_plan
from lightning_ted.core.batch import BatchContext, IndexedSample
from lightning_ted.core.resume import EpochCursor
from lightning_ted.core.schedules import PruneSchedule, RollerCoasterSchedule
from lightning_ted.core.selection import Selection, epoch_generator
from lightning_ted.core.state import Observations, ScoreState, gather_observations
from lightning_ted.data.device_loader import check_device_resident_options
from lightning_ted.data.loader import epoch_loader
from lightning_ted.methods import PruningMethod, build_method
from lightning_ted.observe.generalization import GeneralizationMeter
from lightning_ted.observe.labels import dataset_labels
from lightning_ted.streaming.epoch import streamed_epoch_loader
from lightning_ted.streaming.sources import train_source


class DynamicPruningDataModule(ForwardedHooks, PruningCheckpoint, PruningDataSource, *DATAMODULE_BASES):
    """Serve each epoch only the samples the pruning method keeps.

    Args:
        train_dataset: map-style training set (``__getitem__`` and ``__len__``); or give ``datamodule``.
        datamodule: a ``LightningDataModule`` to wrap; its train set is pruned, its val/test loaders and batch
            hooks are used unchanged, and its train loader's options are reused where not given here (see
            :func:`~lightning_ted.adapters.wrapping.adopt_train_loader`, which also names the samplers it refuses).
        method: a :class:`PruningMethod` or a name (``"ted"``, ``"full"``).
        schedule: pruning-ratio schedule; default ``RollerCoasterSchedule(0.5)``.
        val_dataset, test_dataset: optional evaluation sets, or ready ``DataLoader``s used as given (ignored
            when ``datamodule`` is given).
        batch_size, num_workers, collate_fn, pin_memory, drop_last, persistent_workers, prefetch_factor:
            passed to the data loaders (``None``: the wrapped loader's value, else PyTorch's default).
        seed: seeds selection and shuffling through ``(seed, epoch)``, so every rank and every resumed
            run draws the same kept set in the same order.
        device_resident: serve the train batches from a ``TensorDataset`` moved to the training device once,
            shuffled and gathered there by tensor ops (no workers, no per-sample Python; same batches as
            the standard loader). ``None`` (default): only when its tensors already live on an accelerator.
        stream: for a litdata ``StreamingDataset``, stream it in litdata's order and drop pruned samples in the
            stream (``None``/``True``, default) or read it by index like a map-style dataset (``False``); see
            :mod:`lightning_ted.streaming`.
        id_column: for another ``IterableDataset`` (with ``__len__``), the key or position of each item's stable
            sample id in ``[0, len)``; such a dataset is streamed like a ``StreamingDataset``.

    A fit without ``ckpt_path`` on a new Trainer starts from fresh scores, so one datamodule can serve
    several runs; a ``TEDPruningCallback`` is added to a Trainer that lists none.
    """

    def __init__(
        self,
        train_dataset: Dataset | None = None,
        *,
        datamodule: AnyDataModule | None = None,  # either Lightning package's (compat.py)
        method: str | PruningMethod = "ted",
        schedule: PruneSchedule | None = None,
        val_dataset: Dataset | DataLoader | None = None,
        test_dataset: Dataset | DataLoader | None = None,
        batch_size: int | None = None,
        num_workers: int | None = None,
        collate_fn: Any = None,
        pin_memory: bool | None = None,
        drop_last: bool | None = None,
        persistent_workers: bool | None = None,
        prefetch_factor: int | None = None,
        seed: int = 0,
        device_resident: bool | None = None,
        stream: bool | None = None,
        id_column: str | int | None = None,
    ) -> None:
        super().__init__()
        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer (None: the wrapped loader's), got {batch_size!r}")
        check_device_resident_options(device_resident, num_workers, collate_fn)  # device_loader.py
        self.device_resident = device_resident
        self._resident: tuple | None = None  # (dataset tensors, their copies on the device)
        if (train_dataset is None) == (datamodule is None):
            raise ValueError("give exactly one of train_dataset or datamodule to DynamicPruningDataModule")
        self.stream_source = None  # streaming/sources.py: set for a streamed (iterable) training set
        if train_dataset is not None:
            train_dataset, self.stream_source = train_source(train_dataset, stream, id_column)
        self.train_dataset = train_dataset
        self.inner = datamodule
        restore_own_hparams(datamodule)  # under LightningCLI it was handed this wrapper's (nesting.py)
        self.method = build_method(method)
        self.schedule = schedule if schedule is not None else RollerCoasterSchedule()
        self.val_dataset, self.test_dataset = val_dataset, test_dataset
        self.batch_size, self.num_workers, self.collate_fn = batch_size, num_workers, collate_fn
        self.pin_memory, self.drop_last = pin_memory, drop_last
        self.persistent_workers, self.prefetch_factor = persistent_workers, prefetch_factor
        self.loader_options: dict[str, Any] = {"shuffle": True}  # adopted from a wrapped loader
        self.seed = int(seed)
        self.overfitting = False  # Trainer(overfit_batches=...): the full data in order, unpruned
        self._reset()
        self._pending_load: dict | None = None
        self._labels: Tensor | bool | None = None  # train_labels() cache; False = the dataset has none
        self._hook_warnings = HookWarningScope()

    def _reset(self) -> None:
        """Forget everything a previous run learnt (a fresh fit)."""
        self.state: ScoreState | None = None
        self.generalization: GeneralizationMeter | None = None  # the ig/* readings (observe/generalization.py)
        self.batch_context: BatchContext | None = None
        self.current_selection: Selection | None = None
        self.trained_selection: Selection | None = None  # what the epoch loads (limit_train_batches)
        self.kept_history: Tensor = torch.zeros(0, dtype=torch.int64)  # samples trained per epoch
        self._cache: tuple[int, int, Selection] | None = None  # (epoch, state version, selection)
        self._version = 0
        self._interrupted: tuple[EpochCursor, Selection] | None = None  # the epoch a checkpoint was written in
        self._unfolded_epoch: int | None = None  # a checkpoint's finished epoch whose observations await folding
        self.begun_epoch = -1  # last epoch whose start was recorded (see record_epoch)
        self.cursor: EpochCursor | None = None  # progress through the current epoch's train loader
        self._context: tuple[Tensor, Tensor] | None = None  # (index, weight) of the batch in transfer

    # ------------------------------------------------------------------ Lightning data hooks

    def setup(self, stage: str) -> None:
        if self.inner is not None:
            self.inner.trainer = self.trainer
            self.inner.setup(stage)
        self._hook_warnings.open()
        if stage != "fit":
            return
        trainer = self.trainer
        if trainer is not None and self.state is not None and fit_start.starts_fresh(trainer):
            self._reset()  # a new run: the previous fit's scores, history and cursor do not belong to it
        if self.inner is not None and self.train_dataset is None:
            self.train_dataset, options = adopt_train_loader(self.inner.train_dataloader())
            for name, value in options.items():  # what this wrapper was given wins over the wrapped loader
                if name not in self.__dict__:
                    self.loader_options[name] = value
                elif self.__dict__[name] is None:
                    setattr(self, name, value)
            check_device_resident_options(self.device_resident, self.num_workers, self.collate_fn, adopted=True)
        if self.state is None:
            n = self.stream_source.num_samples if self.stream_source is not None else len(self.train_dataset)
            self.state = ScoreState(n, aux=self.method.uses_aux)
            self.generalization = GeneralizationMeter(n)
        if trainer is not None:
            self.schedule.follow(trainer.max_epochs)
            self.method.bind(self.schedule.max_epochs)
            quantum = (self.batch_size or 1) * trainer.world_size * trainer.accumulate_grad_batches  # samples per step
            n = self.state.num_samples
            max_drop, exact = n - self.method.min_kept(n), self.method.exact_kept_count
            self.schedule.attach(self.generalization, n, quantum, max_drop, exact)  # adaptive_schedules.py reads it
            fit_start.ensure_reload_every_epoch(trainer)
            fit_start.ensure_callback(trainer, TEDPruningCallback)
            self.overfitting = fit_start.note_overfitting(trainer)
            run_plan.check_plan(self)
        if self.schedule.max_epochs is not None and self.kept_history.numel() < self.schedule.max_epochs:
            grown = torch.zeros(self.schedule.max_epochs, dtype=torch.int64)
            grown[: self.kept_history.numel()] = self.kept_history
            self.kept_history = grown
        if self._pending_load is not None:
            state, self._pending_load = self._pending_load, None
            self.load_state_dict(state)

    def train_dataloader(self) -> DataLoader:
        if self.state is None:
            raise RuntimeError("DynamicPruningDataModule.setup('fit') must run before train_dataloader()")
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        if self._unfolded_epoch is not None and epoch > self._unfolded_epoch:
            self.fold_finished_epoch()
        n = self.state.num_samples
        selection = Selection(torch.arange(n), n, 1.0, n) if self.overfitting else self.selection_for(epoch)
        self.current_selection = selection
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        resume = self._interrupted is not None and self._interrupted[0].epoch == epoch
        self.cursor = copy(self._interrupted[0]) if resume else EpochCursor(epoch)
        build = epoch_loader if self.stream_source is None else streamed_epoch_loader  # streaming/: an iterable set
        loader, self.trained_selection = build(self, selection, self.cursor, world, rank)
        return loader

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, IndexedSample):  # unwrap before any user hook sees the batch
            self._context = (batch.index, batch.weight)
            if self.cursor is not None:
                self.cursor.advance(int(batch.index.shape[0]), self.trainer.world_size if self.trainer else 1)
            batch = batch.data
        return call_batch_hook(self, "on_before_batch_transfer", batch, dataloader_idx)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if self._context is not None:
            index, weight = self._context
            self.batch_context = BatchContext(index.to(device, non_blocking=True), weight.to(device, non_blocking=True))
            self._context = None
        default = super().transfer_batch_to_device
        return call_batch_hook(self, "transfer_batch_to_device", batch, device, dataloader_idx, default=default)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return call_batch_hook(self, "on_after_batch_transfer", batch, dataloader_idx)

    # ------------------------------------------------------------------ selection
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

    def record_epoch(self, epoch: int) -> None:
        """Note the number of samples the epoch that starts trains (called by the callback once per epoch)."""
        self.begun_epoch = epoch
        if self.trained_selection is not None and epoch < self.kept_history.numel():
            self.kept_history[epoch] = len(self.trained_selection)

    def fold_finished_epoch(self) -> None:
        """Fold in the observations of an epoch a checkpoint caught after its last batch but before its end
        hooks (Lightning does not rerun them on resume): they were gathered from every rank when saved. Called
        before the next epoch's selection, and when a resumed fit ends without another epoch."""
        if self._unfolded_epoch is None:
            return
        epoch, self._unfolded_epoch = self._unfolded_epoch, None
        self.sync_and_update(epoch)

    def saved_fraction(self, through_epoch: int) -> float:
        """Fraction of sample-passes saved in epochs ``0..through_epoch`` compared with full data."""
        done = self.kept_history[: through_epoch + 1]
        return 1.0 - float(done.sum()) / (self.state.num_samples * (through_epoch + 1))

    def train_labels(self) -> Tensor | None:
        """Integer class label of every training sample when the dataset exposes them (see
        :func:`~lightning_ted.observe.labels.dataset_labels`), else ``None``; cached after the first call."""
        if self._labels is None and self.train_dataset is not None:
            labels = dataset_labels(self.train_dataset)
            self._labels = labels if labels is not None else False
        return self._labels if self._labels is not False else None

    def sync_and_update(self, epoch: int) -> None:
        """Gather this epoch's observations from all ranks (one collective) and fold them into the scores."""
        restored, local = self.state.take_split()
        obs = restored.join(self._gather(local))
        self.generalization.observe(obs.index, obs.loss, self.state.last_epoch, epoch)  # before the visit is recorded
        self.method.update(self.state, obs, epoch)
        self._version += 1

    def _gather(self, obs: Observations) -> Observations:
        """Every rank's observations (one ``all_gather``); ``obs`` itself on a single process."""
        world = self.trainer.world_size if self.trainer is not None else 1
        if world == 1 or self.current_selection is None or not torch.distributed.is_initialized():
            return obs
        capacity = getattr(self.cursor, "capacity", None) or math.ceil(len(self.current_selection) / world)
        strategy = self.trainer.strategy
        return gather_observations(obs, capacity, lambda t: strategy.all_gather(t.to(strategy.root_device)))

    def total_optimizer_steps(self) -> int:
        """Exact number of optimizer steps the whole pruned run takes, known before training.

        Use it for step-counting LR schedulers (e.g. ``OneCycleLR(total_steps=...)``) in
        ``configure_optimizers``. It counts the Trainer's ``limit_train_batches`` and assumes per-sample losses
        are finite (a NaN leaves its sample unscored). Where ``limit_train_batches`` leaves samples unscored that
        TED would then keep, it is the most the run can take, with a ``StepCountWarning`` (see
        :func:`lightning_ted.core.run_plan.total_optimizer_steps`).
        """
        return run_plan.total_optimizer_steps(self)
