"""``DynamicPruningDataModule``: owns the score state, the pruning method and the per-epoch kept set.

It wraps a map-style ``Dataset`` (or another ``LightningDataModule``). Each epoch the train loader is
rebuilt over the kept indices only; every item carries its dataset index and weight, and the batch is
unwrapped again in ``on_after_batch_transfer`` so the user's ``training_step`` sees its usual batch.
Validation and test loaders are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, default_collate
from torch.utils.data.distributed import DistributedSampler

from lightning_ted.methods import PruningMethod, build_method
from lightning_ted.schedules import PruneSchedule, RollerCoasterSchedule
from lightning_ted.selection import Selection, epoch_generator
from lightning_ted.state import Observations, ScoreState, gather_observations


class IndexedSample(NamedTuple):
    """A training item (or collated batch) with its dataset index and loss weight."""

    data: Any
    index: Any
    weight: Any


@dataclass
class BatchContext:
    """What the current training batch carries besides the user's data (set per step)."""

    index: Tensor
    weight: Tensor
    loss_grad: Tensor | None = None  # dL/dl_k, captured by ``pruned_loss`` during backward

    def capture_loss_grad(self, grad: Tensor) -> None:
        self.loss_grad = grad.detach()


class Collated(NamedTuple):
    """A batch that is already collated (see ``KeptDataset.gather_tensors``)."""

    batch: Any


class KeptDataset(Dataset):
    """The kept samples of one epoch, each returned as ``IndexedSample(item, index, weight)``."""

    def __init__(self, base: Dataset, selection: Selection, gather_tensors: bool = False) -> None:
        self.base = base
        self.selection = selection
        # a TensorDataset with the default collate: index its tensors once per batch (what default_collate
        # would build from the single items, without the per-item Python calls and the stack)
        self.gather_tensors = gather_tensors and isinstance(base, TensorDataset)

    def __len__(self) -> int:
        return len(self.selection)

    def __getitem__(self, pos: int) -> IndexedSample:
        index = int(self.selection.indices[pos])
        weight = 1.0 if pos < self.selection.num_unit_weight else self.selection.weight
        return IndexedSample(self.base[index], index, weight)

    def __getitems__(self, positions: list[int]) -> IndexedSample:
        """A whole batch at once (the DataLoader calls this when it exists): index and weight tensors are
        looked up with one tensor op each instead of per sample."""
        pos = torch.as_tensor(positions, dtype=torch.int64)
        index = self.selection.indices[pos]
        if self.gather_tensors:
            batch = Collated([t[index] for t in self.base.tensors])
            return IndexedSample(batch, index, self.selection.weight_at(pos))
        getitems = getattr(self.base, "__getitems__", None)
        keys = index.tolist()
        items = getitems(keys) if getitems is not None else [self.base[i] for i in keys]
        return IndexedSample(items, index, self.selection.weight_at(pos))


_CHUNK = 1 << 16


class EpochShuffleSampler(DistributedSampler):
    """This rank's share of a permutation of ``range(n)`` drawn from ``(seed, epoch)``.

    The permutation is the same on every rank and on every ``iter()`` call (Lightning may create the
    train iterator twice when resuming). Ranks take every ``num_replicas``-th position; like
    ``DistributedSampler``, the permutation is padded with its first ``< num_replicas`` entries so every
    rank gets ``ceil(n / num_replicas)`` samples. Being a ``DistributedSampler``, Lightning uses it as is
    instead of wrapping it (which would materialise the epoch as a Python list).
    """

    def __init__(self, n: int, seed: int, epoch: int, num_replicas: int = 1, rank: int = 0) -> None:
        # DistributedSampler.__init__ is not called: it needs a dataset and an initialised process group.
        self.n, self.seed, self.epoch = n, seed, epoch
        self.num_replicas, self.rank = num_replicas, rank
        self.start = 0  # positions of this rank's shard already trained (mid-epoch resume)
        self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle, self.drop_last = True, False

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the epoch is fixed when the loader is built for it (the kept set depends on it too)."""

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch, stream=1))
        pad = self.total_size - self.n
        if pad:
            order = torch.cat([order, order.repeat(math.ceil(pad / self.n))[:pad]])
        shard = order[self.rank : self.total_size : self.num_replicas][self.start :]
        for chunk in shard.split(_CHUNK):  # never one Python list of the whole epoch
            yield from chunk.tolist()


@dataclass
class EpochCursor:
    """How far training got through one epoch's loader: the state a mid-epoch checkpoint must carry."""

    epoch: int
    batches: int = 0  # training batches transferred to the model so far in this epoch


class PruningDataLoader(DataLoader):
    """The train loader of one epoch, resumable mid-epoch.

    Lightning saves ``state_dict()`` of a train loader that has one in every checkpoint and hands it to
    ``load_state_dict()`` on resume. The cursor counts batches the model received (not batches the
    fetcher prefetched), so a resumed run continues with the first batch the interrupted run did not
    train on: nothing is repeated or skipped.
    """

    def __init__(self, *args: Any, cursor: EpochCursor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor = cursor

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "batches": self.cursor.batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches"])
        if epoch != self.cursor.epoch:
            raise RuntimeError(
                f"the checkpoint's train loader stopped in epoch {epoch} but Lightning resumes epoch "
                f"{self.cursor.epoch}; the checkpoint does not match its training progress."
            )
        self.cursor.batches = batches
        self.sampler.start = min(batches * (self.batch_size or 1), len(self.sampler))


class IndexedCollate:
    """Collates ``IndexedSample`` items with the user's ``collate_fn`` applied to the data part."""

    def __init__(self, collate_fn: Any = None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, items: list[IndexedSample] | IndexedSample) -> IndexedSample:
        if isinstance(items, IndexedSample):  # a batch from KeptDataset.__getitems__
            data = items.data.batch if isinstance(items.data, Collated) else self.collate_fn(items.data)
            return IndexedSample(data, items.index, items.weight)
        data = self.collate_fn([it.data for it in items])
        index = torch.tensor([it.index for it in items], dtype=torch.int64)
        weight = torch.tensor([it.weight for it in items], dtype=torch.float32)
        return IndexedSample(data, index, weight)


class DynamicPruningDataModule(L.LightningDataModule):
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
    ) -> None:
        super().__init__()
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
            self._adopt_inner_train_loader()
        if self.state is None:
            self.state = ScoreState(len(self.train_dataset), aux=self.method.uses_aux)
        if self.trainer is not None:
            self.schedule.bind(self.trainer.max_epochs)
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
        """Integer class label of every training sample, when the dataset exposes them, else ``None``.

        Read from a ``targets`` attribute (torchvision datasets) or from the last tensor of a
        ``TensorDataset``; used for the kept fraction per class. Cached after the first call.
        """
        if self._labels is None and self.train_dataset is not None:
            ds = self.train_dataset
            labels = getattr(ds, "targets", None)
            if labels is None and isinstance(ds, TensorDataset):
                labels = ds.tensors[-1]
            labels = torch.as_tensor(labels) if labels is not None else None
            ok = labels is not None and labels.dim() == 1 and labels.numel() == len(ds)
            self._labels = labels.long() if ok and not labels.is_floating_point() else False
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
        n, world = self.state.num_samples, trainer.world_size
        accumulate, bs = trainer.accumulate_grad_batches, self.batch_size or 1
        total = 0
        for epoch in range(self.schedule.max_epochs):
            kept = self.method.expected_kept(n, self.schedule.prune_ratio(epoch), epoch)
            per_rank = math.ceil(kept / world)
            batches = per_rank // bs if self.drop_last else math.ceil(per_rank / bs)
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
    def _adopt_inner_train_loader(self) -> None:
        loader = self.inner.train_dataloader()
        if not isinstance(loader, DataLoader):
            raise TypeError(
                f"the wrapped datamodule's train_dataloader() returned {type(loader).__name__}; "
                "DynamicPruningDataModule needs a single torch DataLoader over a map-style dataset."
            )
        _check_map_style(loader.dataset)
        self.train_dataset = loader.dataset
        if self.batch_size is None:
            self.batch_size = loader.batch_size
        if self.collate_fn is None:
            self.collate_fn = loader.collate_fn
        if self.num_workers is None:
            self.num_workers = loader.num_workers

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
