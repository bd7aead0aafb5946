"""``DynamicPruningDataModule``: owns the score state, the pruning method and the per-epoch kept set.

It wraps a map-style ``Dataset`` (or another ``LightningDataModule``). Each epoch the train loader is
rebuilt over the kept indices only; every item carries its dataset index and weight, and the batch is
unwrapped again in ``on_after_batch_transfer`` so the user's ``training_step`` sees its usual batch.
Validation and test loaders are untouched.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from lightning_ted.compat import DATAMODULE_BASES
from lightning_ted.device_loader import check_device_resident_options, device_resident_loader
from lightning_ted.loader import (
    BatchContext,
    EpochCursor,
    EpochShuffleSampler,
    IndexedCollate,
    IndexedSample,
    KeptDataset,
    PruningDataLoader,
    batches_per_rank,
)
from lightning_ted.methods import PruningMethod, build_method
from lightning_ted.observe.labels import dataset_labels
from lightning_ted.schedules import PruneSchedule, RollerCoasterSchedule
from lightning_ted.selection import Selection, epoch_generator
from lightning_ted.state import Observations, ScoreState, gather_observations


class DynamicPruningDataModule(*DATAMODULE_BASES):
    """Serve each epoch only the samples the pruning method keeps.

    Args:
        train_dataset: map-style training set (``__getitem__`` and ``__len__``); or give ``datamodule``.
        datamodule: a ``LightningDataModule`` to wrap; its train set is pruned, its val/test loaders
            are used unchanged, and its loader's batch size / collate_fn / workers are reused.
        method: a :class:`PruningMethod` or a name (``"ted"``, ``"full"``).
        schedule: pruning-ratio schedule; default ``RollerCoasterSchedule(0.5)``.
        val_dataset, test_dataset: optional evaluation sets (ignored when ``datamodule`` is given).
        batch_size, num_workers, collate_fn, pin_memory, drop_last: passed to the train ``DataLoader``.
        seed: seeds selection and shuffling through ``(seed, epoch)``, so every rank and every resumed
            run draws the same kept set in the same order.
        device_resident: serve the train batches from a ``TensorDataset`` moved to the training device once,
            shuffled and gathered there by tensor ops (no workers, no per-sample Python; same batches as
            the standard loader). ``None`` (default): only when its tensors already live on an accelerator.
    """

    def __init__(
        self,
        train_dataset: Dataset | None = None,
        *,
        datamodule: L.LightningDataModule | None = None,
        method: str | PruningMethod = "ted",
        schedule: PruneSchedule | None = None,
        val_dataset: Dataset | None = None,
        test_dataset: Dataset | None = None,
        batch_size: int | None = None,
        num_workers: int | None = None,
        collate_fn: Any = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device_resident: bool | None = None,
    ) -> None:
        super().__init__()
        check_device_resident_options(device_resident, num_workers, collate_fn)  # device_loader.py
        self.device_resident = device_resident
        self._resident: tuple | None = None  # (dataset tensors, their copies on the device)
        if (train_dataset is None) == (datamodule is None):
            raise ValueError("give exactly one of train_dataset or datamodule to DynamicPruningDataModule")
        if train_dataset is not None:
            _check_map_style(train_dataset)
        self.train_dataset = train_dataset
        self.inner = datamodule
        self.method = build_method(method)
        self.schedule = schedule if schedule is not None else RollerCoasterSchedule()
        self.val_dataset, self.test_dataset = val_dataset, test_dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.seed = int(seed)
        self.state: ScoreState | None = None
        self.batch_context: BatchContext | None = None
        self.current_selection: Selection | None = None
        self.kept_history: Tensor = torch.zeros(0, dtype=torch.int64)  # kept count per trained epoch
        self._cache: tuple[int, int, Selection] | None = None  # (epoch, state version, selection)
        self._version = 0
        self._pending_load: dict | None = None
        self.cursor: EpochCursor | None = None  # progress through the current epoch's train loader
        self._labels: Tensor | bool | None = None  # train_labels() cache; False = the dataset has none

    def __getattr__(self, name: str) -> Any:
        """Attributes this wrapper does not define read through to the wrapped datamodule (``dm.num_labels``)."""
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(inner, name)

    # ------------------------------------------------------------------ Lightning data hooks
    def prepare_data(self) -> None:
        if self.inner is not None:
            self.inner.prepare_data()

    def setup(self, stage: str) -> None:
        if self.inner is not None:
            self.inner.trainer = self.trainer
            self.inner.setup(stage)
        if stage != "fit":
            return
        if self.inner is not None and self.train_dataset is None:
            self.train_dataset, options = adopt_train_loader(self.inner.train_dataloader())
            for name, value in options.items():
                if getattr(self, name) is None:
                    setattr(self, name, value)
        if self.state is None:
            self.state = ScoreState(len(self.train_dataset), aux=self.method.uses_aux)
        if self.trainer is not None:
            self.schedule.bind(self.trainer.max_epochs)
            self.method.bind(self.schedule.max_epochs)
            self._ensure_reload_every_epoch()
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
        self._check_dataset_length()
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        selection = self.selection_for(epoch)
        self.current_selection = selection
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        self.cursor = EpochCursor(epoch)
        resident = device_resident_loader(self, selection, world, rank)  # device_loader.py: tensors on the device
        if resident is not None:
            return resident
        return PruningDataLoader(
            KeptDataset(self.train_dataset, selection, gather_tensors=self.collate_fn in (None, default_collate)),
            cursor=self.cursor,
            batch_size=self.batch_size or 1,
            sampler=EpochShuffleSampler(len(selection), self.seed, epoch, world, rank),
            generator=epoch_generator(self.seed, epoch, stream=2),  # worker seeds
            num_workers=self.num_workers or 0,
            collate_fn=IndexedCollate(self.collate_fn),
            pin_memory=self.pin_memory,
            drop_last=self.drop_last,
        )

    def val_dataloader(self) -> Any:
        if self.inner is not None:
            return self.inner.val_dataloader()
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> Any:
        if self.inner is not None:
            return self.inner.test_dataloader()
        return self._eval_loader(self.test_dataset)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, IndexedSample):
            return IndexedSample(
                self._inner_hook("on_before_batch_transfer", batch.data, dataloader_idx), batch.index, batch.weight
            )
        return self._inner_hook("on_before_batch_transfer", batch, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, IndexedSample):
            self.batch_context = BatchContext(batch.index, batch.weight)
            if self.cursor is not None:
                self.cursor.batches += 1
            batch = batch.data
        return self._inner_hook("on_after_batch_transfer", batch, dataloader_idx)

    # ------------------------------------------------------------------ selection
    def selection_for(self, epoch: int) -> Selection:
        """Kept set of ``epoch``: a pure function of (scores, epoch, seed), cached per state version."""
        if self._cache is not None and self._cache[:2] == (epoch, self._version):
            return self._cache[2]
        ratio = self.schedule.prune_ratio(epoch)
        selection = self.method.select(self.state, ratio, epoch_generator(self.seed, epoch))
        self._cache = (epoch, self._version, selection)
        return selection

    def record_epoch(self, epoch: int) -> None:
        """Note the kept count of the epoch that starts (called by the callback)."""
        if self.current_selection is not None and epoch < self.kept_history.numel():
            self.kept_history[epoch] = len(self.current_selection)

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
        self.method.update(self.state, restored.join(self._gather(local)), epoch)
        self._version += 1

    def _gather(self, obs: Observations) -> Observations:
        """Every rank's observations (one ``all_gather``); ``obs`` itself on a single process."""
        world = self.trainer.world_size if self.trainer is not None else 1
        if world == 1 or self.current_selection is None or not torch.distributed.is_initialized():
            return obs
        capacity = math.ceil(len(self.current_selection) / world)
        strategy = self.trainer.strategy
        return gather_observations(obs, capacity, lambda t: strategy.all_gather(t.to(strategy.root_device)))

    def total_optimizer_steps(self) -> int:
        """Exact number of optimizer steps the whole pruned run takes, known before training.

        Use it for step-counting LR schedulers (e.g. ``OneCycleLR(total_steps=...)``) in
        ``configure_optimizers``. It assumes every sample is scored after the first epoch, which holds
        unless per-sample losses are NaN.
        """
        trainer = self.trainer
        if trainer is None or self.state is None:
            raise RuntimeError("total_optimizer_steps() needs the datamodule attached to a Trainer and set up")
        if not self.method.exact_kept_count:
            raise RuntimeError(
                f"method {self.method.name!r} keeps a score-dependent number of samples, so the step count is "
                "not known before training; use an epoch-based learning-rate schedule instead."
            )
        world, accumulate = trainer.world_size, trainer.accumulate_grad_batches
        total = 0
        for epoch in range(self.schedule.max_epochs):
            kept = self.method.expected_kept(self.state.num_samples, self.schedule.prune_ratio(epoch), epoch)
            batches = batches_per_rank(kept, world, self.batch_size or 1, self.drop_last)
            total += math.ceil(batches / accumulate)
        return total

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The pruning state for a checkpoint.

        Under DDP, Lightning calls this on every rank while saving; the observations each rank buffered
        since the epoch began are gathered here (one collective) so a mid-epoch checkpoint loses none.
        """
        if self.state is None:
            return {}
        return {
            "method": self.method.state_dict(),
            "state": self.state.state_dict(all_ranks_pending=self._gather(self.state.local_pending())),
            "seed": self.seed,
            "kept_history": self.kept_history.clone(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.state is None:  # restored before setup: apply once the dataset size is known
            self._pending_load = state_dict
            return
        self.method.load_state_dict(state_dict["method"])
        self.state.load_state_dict(state_dict["state"])
        self.seed = int(state_dict["seed"])
        history = state_dict["kept_history"]
        self.kept_history[: history.numel()] = history[: self.kept_history.numel()]
        self._version += 1

    # ------------------------------------------------------------------ helpers
    def _ensure_reload_every_epoch(self) -> None:
        n = self.trainer.reload_dataloaders_every_n_epochs
        if n == 0:
            self.trainer.reload_dataloaders_every_n_epochs = 1
            rank_zero_info(
                "DynamicPruningDataModule set Trainer(reload_dataloaders_every_n_epochs=1): "
                "the kept set changes every epoch."
            )
        elif n != 1:
            raise ValueError(
                f"Trainer(reload_dataloaders_every_n_epochs={n}) would keep one epoch's kept set for {n} "
                "epochs; dynamic pruning rebuilds the train loader every epoch. Set it to 1 (or leave it 0)."
            )

    def _check_dataset_length(self) -> None:
        n = len(self.train_dataset)
        if n != self.state.num_samples:
            raise RuntimeError(
                f"the training set changed length from {self.state.num_samples} to {n} samples; per-sample "
                "scores are indexed by position, so the dataset must keep a fixed length for the whole run."
            )

    def _eval_loader(self, dataset: Dataset | None) -> DataLoader | list:
        if dataset is None:
            return []
        return DataLoader(
            dataset,
            batch_size=self.batch_size or 1,
            shuffle=False,
            num_workers=self.num_workers or 0,
            collate_fn=self.collate_fn,
        )

    def _inner_hook(self, name: str, batch: Any, dataloader_idx: int) -> Any:
        if self.inner is None:
            return batch
        return getattr(self.inner, name)(batch, dataloader_idx)


def _check_map_style(dataset: Any) -> None:
    if isinstance(dataset, IterableDataset):
        raise TypeError(
            f"{type(dataset).__name__} is an IterableDataset; dynamic pruning must address samples by index. "
            "Use a map-style Dataset (__getitem__ and __len__), e.g. materialise or shard it into one."
        )
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(
            f"{type(dataset).__name__} is not a map-style dataset: it needs __getitem__(i) and __len__() "
            "so every sample has a stable index for its score."
        )


def adopt_train_loader(loader: Any) -> tuple[Dataset, dict[str, Any]]:
    """The train set of a wrapped datamodule's loader and the loader options the pruned loader reuses."""
    if not isinstance(loader, DataLoader):
        raise TypeError(
            f"the wrapped datamodule's train_dataloader() returned {type(loader).__name__}; "
            "DynamicPruningDataModule needs a single torch DataLoader over a map-style dataset."
        )
    _check_map_style(loader.dataset)
    options = {"batch_size": loader.batch_size, "collate_fn": loader.collate_fn, "num_workers": loader.num_workers}
    return loader.dataset, options
