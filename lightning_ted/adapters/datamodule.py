"""``DynamicPruningDataModule``: the Lightning adapter around a pruning run (``core/run.py``: the score state,
the method and the per-epoch kept set).

It wraps a map-style ``Dataset`` (or another ``LightningDataModule``). Each epoch the train loader is
rebuilt over the kept indices only; every item carries its dataset index and weight, and the batch is
unwrapped in ``on_before_batch_transfer``, before any user hook, so the user's hooks and ``training_step``
see their usual batch. Validation and test loaders are untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_ted.adapters import fit_start
from lightning_ted.adapters.callback import TEDPruningCallback
from lightning_ted.adapters.checkpointing import PruningCheckpoint
from lightning_ted.adapters.compat import DATAMODULE_BASES, AnyDataModule
from lightning_ted.adapters.data_source import PruningDataSource, run_attribute
from lightning_ted.adapters.forwarded_hooks import ForwardedHooks
from lightning_ted.adapters.nesting import restore_own_hparams
from lightning_ted.adapters.wrapping import HookWarningScope, adopt_train_loader, call_batch_hook
from lightning_ted.core import run_plan
from lightning_ted.core.batch import BatchContext, IndexedSample
from lightning_ted.core.run import Collective, PruningRun
from lightning_ted.core.schedules import PruneSchedule, RollerCoasterSchedule
from lightning_ted.core.selection import Selection
from lightning_ted.data.device_loader import check_device_resident_options
from lightning_ted.data.loader import epoch_loader
from lightning_ted.data.spec import TrainData
from lightning_ted.methods import PruningMethod, build_method
from lightning_ted.methods.base import EpochInputs
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
    several runs; a ``TEDPruningCallback`` is added to a Trainer that lists none. The run itself (scores,
    method, schedule, selections, checkpoint) is :attr:`run`, a :class:`~lightning_ted.core.run.PruningRun`.

    Raises:
        ValueError: if ``batch_size`` is not a positive integer; if both or neither of ``train_dataset`` and
            ``datamodule`` are given; if ``method`` names no method; if ``device_resident=True`` comes with
            ``num_workers`` or a ``collate_fn``; if ``stream`` or ``id_column`` does not fit the dataset's kind.
        TypeError: if an ``IterableDataset`` has no sample id (``id_column``) or, with one, no ``__len__``.

    Examples:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from lightning_ted import ConstantSchedule
        >>> data = TensorDataset(torch.randn(100, 3), torch.randint(0, 2, (100,)))
        >>> schedule = ConstantSchedule(ratio=0.5, max_epochs=4)  # a Trainer would set the run length
        >>> dm = DynamicPruningDataModule(data, method="random", schedule=schedule, batch_size=10)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))  # epoch 0 (warm-up) keeps every sample
        >>> type(batch).__name__, batch.index.shape, len(dm.current_selection)
        ('IndexedSample', torch.Size([10]), 100)
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
        schedule = schedule if schedule is not None else RollerCoasterSchedule()
        self.run = PruningRun(build_method(method), schedule, seed)  # core/run.py: owns the pruning run
        self.val_dataset, self.test_dataset = val_dataset, test_dataset
        self.batch_size, self.num_workers, self.collate_fn = batch_size, num_workers, collate_fn
        self.pin_memory, self.drop_last = pin_memory, drop_last
        self.persistent_workers, self.prefetch_factor = persistent_workers, prefetch_factor
        self.loader_options: dict[str, Any] = {"shuffle": True}  # adopted from a wrapped loader
        self.overfitting = False  # Trainer(overfit_batches=...): the full data in order, unpruned
        self._reset()
        self._pending_load: dict | None = None
        self._labels: Tensor | bool | None = None  # train_labels() cache; False = the dataset has none
        self._hook_warnings = HookWarningScope()

    # what the callback, the tests and users read of the run (core/run.py owns them)
    method = run_attribute("method")
    schedule = run_attribute("schedule")
    seed = run_attribute("seed")
    state = run_attribute("state")
    generalization = run_attribute("generalization")
    current_selection = run_attribute("current_selection")
    trained_selection = run_attribute("trained_selection")
    kept_history = run_attribute("kept_history")
    cursor = run_attribute("cursor")
    begun_epoch = run_attribute("begun_epoch")

    def _reset(self) -> None:
        """Forget everything a previous run learnt (a fresh fit)."""
        self.run.reset()
        self.batch_context: BatchContext | None = None
        self._context: tuple[Tensor, Tensor] | None = None  # (index, weight) of the batch in transfer

    # ------------------------------------------------------------------ Lightning data hooks

    @override
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
        n = self.stream_source.num_samples if self.stream_source is not None else len(self.train_dataset)
        self.run.allocate(n, self.train_labels() if self.state is None else None)
        if trainer is not None:
            quantum = (self.batch_size or 1) * trainer.world_size * trainer.accumulate_grad_batches  # samples per step
            self.run.configure(trainer.max_epochs, quantum)
            fit_start.ensure_reload_every_epoch(trainer)
            fit_start.ensure_callback(trainer, TEDPruningCallback)
            self.overfitting = fit_start.note_overfitting(trainer)
            run_plan.check_plan(self.run, fit_start.trainer_limits(trainer), self.train_data())
        else:  # configure sized the history for the Trainer's run; without one, the schedule's own length
            self.run.grow_history()
        if self._pending_load is not None:
            state, self._pending_load = self._pending_load, None
            self.load_state_dict(state)

    def train_data(self) -> TrainData:
        """The training data and loader options, typed, as the loaders and methods read them."""
        return TrainData(
            self.train_dataset,
            self.stream_source,
            self.seed,
            self.batch_size,
            self.num_workers,
            self.collate_fn,
            self.pin_memory,
            self.drop_last,
            self.persistent_workers,
            self.prefetch_factor,
            self.loader_options,
            self.device_resident,
            self.overfitting,
            self._resident,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        if self.state is None:
            raise RuntimeError("DynamicPruningDataModule.setup('fit') must run before train_dataloader()")
        trainer = self.trainer
        epoch = trainer.current_epoch if trainer is not None else 0
        selection, cursor = self.run.epoch_to_load(epoch, self.overfitting, self._collective())
        data, place = self.train_data(), fit_start.epoch_place(trainer)
        build = epoch_loader if self.stream_source is None else streamed_epoch_loader  # streaming/: an iterable set
        loader, trained, cursor = build(data, place, selection, cursor)
        self._resident = data.resident  # the device copies, reused next epoch
        self.run.loaded(trained, cursor)
        return loader

    @override
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, IndexedSample):  # unwrap before any user hook sees the batch
            self._context = (batch.index, batch.weight)
            if self.cursor is not None:
                self.cursor.advance(int(batch.index.shape[0]), self.trainer.world_size if self.trainer else 1)
            batch = batch.data
        return call_batch_hook(self.trainer, self.inner, "on_before_batch_transfer", batch, dataloader_idx)

    @override
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if self._context is not None:
            index, weight = self._context
            self.batch_context = BatchContext(index.to(device, non_blocking=True), weight.to(device, non_blocking=True))
            self._context = None
        default = super().transfer_batch_to_device
        hook = "transfer_batch_to_device"
        return call_batch_hook(self.trainer, self.inner, hook, batch, device, dataloader_idx, default=default)

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return call_batch_hook(self.trainer, self.inner, "on_after_batch_transfer", batch, dataloader_idx)

    # ------------------------------------------------------------------ the run, for the callback
    def selection_for(self, epoch: int) -> Selection:
        """Kept set of ``epoch`` (see :meth:`PruningRun.selection_for <lightning_ted.core.run.PruningRun>`)."""
        return self.run.selection_for(epoch)

    def record_epoch(self, epoch: int) -> None:
        """Note the number of samples the epoch that starts trains (called by the callback once per epoch)."""
        self.run.record_epoch(epoch)

    def epoch_inputs(self) -> EpochInputs:
        """What the method may read as an epoch starts (its selection, the seed, the training data)."""
        return EpochInputs(self.current_selection, self.seed, self.train_data())

    def fold_finished_epoch(self) -> None:
        """Fold in a checkpoint's finished epoch whose end hooks never ran (see :class:`PruningRun`)."""
        self.run.fold_finished_epoch(self._collective())

    def saved_fraction(self, through_epoch: int) -> float:
        """Fraction of sample-passes saved in epochs ``0..through_epoch`` compared with full data."""
        return self.run.saved_fraction(through_epoch)

    def train_labels(self) -> Tensor | None:
        """Integer class label of every training sample when the dataset exposes them (see
        :func:`~lightning_ted.observe.labels.dataset_labels`), else ``None``; cached after the first call."""
        if self._labels is None and self.train_dataset is not None:
            labels = dataset_labels(self.train_dataset)
            self._labels = labels if labels is not None else False
        return self._labels if self._labels is not False else None

    def sync_and_update(self, epoch: int) -> None:
        """Gather this epoch's observations from all ranks (one collective) and fold them into the scores."""
        self.run.fold(epoch, self._collective())

    def _collective(self) -> Collective | None:
        """The Trainer's all-gather across ranks, or ``None`` on a single process."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1 or not torch.distributed.is_initialized():
            return None
        strategy = trainer.strategy
        return Collective(trainer.world_size, lambda t: strategy.all_gather(t.to(strategy.root_device)))

    def total_optimizer_steps(self) -> int:
        """Exact number of optimizer steps the whole pruned run takes, known before training.

        Use it for step-counting LR schedulers (e.g. ``OneCycleLR(total_steps=...)``) in
        ``configure_optimizers``. It counts the Trainer's ``limit_train_batches`` and assumes per-sample losses
        are finite (a NaN leaves its sample unscored). Where ``limit_train_batches`` leaves samples unscored that
        TED would then keep, it is the most the run can take, with a ``StepCountWarning`` (see
        :func:`lightning_ted.core.run_plan.total_optimizer_steps`).
        """
        if self.trainer is None or self.state is None:
            raise RuntimeError("total_optimizer_steps() needs the datamodule attached to a Trainer and set up")
        return run_plan.total_optimizer_steps(self.run, fit_start.trainer_limits(self.trainer), self.train_data())
