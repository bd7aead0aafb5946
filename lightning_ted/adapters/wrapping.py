"""What ``DynamicPruningDataModule`` takes over from the user's own modules: a wrapped DataModule's train
loader options, and the batch-transfer hooks plain Lightning would have called (the wrapped DataModule's,
else the LightningModule's), so they see the user's batch exactly as without pruning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler

from lightning_ted.adapters.compat import overrides

BATCH_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
#: loader options of a wrapped DataModule's train loader that the pruned loader reuses (sampler policy apart)
ADOPTED = (
    "batch_size",
    "collate_fn",
    "num_workers",
    "pin_memory",
    "drop_last",
    "persistent_workers",
    "prefetch_factor",
    "worker_init_fn",
    "timeout",
    "multiprocessing_context",
)


def check_map_style(dataset: Any) -> None:
    """Refuse a dataset whose samples have no stable index (pruning scores samples by position)."""
    if isinstance(dataset, IterableDataset):
        raise TypeError(
            f"{type(dataset).__name__} is an IterableDataset; dynamic pruning must address samples by index. "
            "Pass it to DynamicPruningDataModule directly (not inside a wrapped DataModule's loader): litdata's "
            "StreamingDataset streams with its global indices, another iterable with __len__ with id_column='<key>' "
            "naming each item's id; or use a map-style Dataset (__getitem__ and __len__)."
        )
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(
            f"{type(dataset).__name__} is not a map-style dataset: it needs __getitem__(i) and __len__() "
            "so every sample has a stable index for its score."
        )


def adopt_train_loader(loader: Any) -> tuple[Dataset, dict[str, Any]]:
    """The train set of a wrapped datamodule's loader and the loader options the pruned loader reuses.

    The sampler policy is kept as ``shuffle``: a ``RandomSampler`` (``shuffle=True``) shuffles the kept
    samples from ``(seed, epoch)``, a ``SequentialSampler`` serves them in index order. Any other sampler or
    batch sampler decides itself which samples an epoch draws, which is the pruning method's job, so it is
    refused with a message naming it. The loader's ``generator`` is not reused: the order comes from the
    datamodule's ``seed`` so that every rank and a resumed run draw the same one.
    """
    if not isinstance(loader, DataLoader):
        raise TypeError(
            f"the wrapped datamodule's train_dataloader() returned {type(loader).__name__}; "
            "DynamicPruningDataModule needs a single torch DataLoader over a map-style dataset."
        )
    check_map_style(loader.dataset)
    if loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler:
        _refuse_sampler(type(loader.batch_sampler).__name__, "batch_sampler")
    sampler = loader.sampler
    plain_random = isinstance(sampler, RandomSampler) and not sampler.replacement
    if plain_random and sampler.num_samples == len(sampler.data_source):
        shuffle = True
    elif isinstance(sampler, SequentialSampler):
        shuffle = False
    else:
        _refuse_sampler(type(sampler).__name__, "sampler")
    options = {name: getattr(loader, name) for name in ADOPTED}
    options["shuffle"] = shuffle
    return loader.dataset, options


def _refuse_sampler(name: str, kind: str) -> None:
    raise ValueError(
        f"the wrapped datamodule's train loader uses {kind}={name}; DynamicPruningDataModule chooses, weighs and "
        f"orders the training samples of every epoch itself, so {name} cannot be combined with it. Return a "
        "loader with shuffle=True (or False) instead; to keep per-sample importance or class-balance weights, "
        "multiply each sample's loss by its weight before pruned_loss(self, losses)."
    )


def user_batch_hook(name: str, inner: L.LightningDataModule | None, model: Any) -> Callable | None:
    """The batch hook plain Lightning would call: the wrapped DataModule's when it overrides ``name``
    (as Lightning prefers the DataModule's), else the LightningModule's when it does, else ``None``."""
    if overrides(name, inner):  # the user's modules may come from pytorch_lightning (compat.overrides)
        return getattr(inner, name)
    if overrides(name, model):
        return getattr(model, name)
    return None


class HookWarningScope:
    """Silence, while one of our datamodule's stages runs, Lightning's warning that the DataModule's batch hooks
    replace the LightningModule's: the pruning DataModule forwards to them (see :func:`user_batch_hook`), so the
    warning would be wrong there. Scoped: :meth:`close` removes the filter and forgets the warning in Lightning's
    once-per-process caches, so a later fit with another DataModule still gets it."""

    MESSAGE = rf"You have overridden `({'|'.join(BATCH_HOOKS)})` in both `LightningModule`"

    def __init__(self) -> None:
        self._filter: tuple | None = None
        self._known: dict[int, set[str]] = {}

    def open(self) -> None:
        if self._filter is not None:
            return
        warnings.filterwarnings("ignore", message=self.MESSAGE)
        self._filter = warnings.filters[0]
        self._known = {id(cache): set(cache) for cache in _hook_warning_caches()}

    def close(self) -> None:
        if self._filter is None:
            return
        if self._filter in warnings.filters:
            warnings.filters.remove(self._filter)
            getattr(warnings, "_filters_mutated", lambda: None)()  # what filterwarnings itself calls
        self._filter = None
        for cache in _hook_warning_caches():
            known = self._known.get(id(cache), set())
            cache.difference_update({m for m in cache if m not in known and "in both `LightningModule`" in m})


def _hook_warning_caches() -> list[set]:
    """Lightning's once-per-process caches that record the hook warning (both packages, when installed)."""
    import importlib

    caches = []
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            module = importlib.import_module(f"{name}.trainer.connectors.data_connector")
        except ImportError:
            continue
        cache = getattr(module, "warning_cache", None)
        if isinstance(cache, set):
            caches.append(cache)
    return caches


def call_batch_hook(
    trainer: Any, inner: L.LightningDataModule | None, name: str, *args: Any, default: Callable | None = None
) -> Any:
    """Run the user's batch hook ``name`` (of the wrapped DataModule ``inner`` or the model of ``trainer``, see
    :func:`user_batch_hook`); without one, ``default(*args)`` or the batch unchanged."""
    model = trainer.lightning_module if trainer is not None else None
    hook = user_batch_hook(name, inner, model)
    if hook is not None:
        return hook(*args)
    return args[0] if default is None else default(*args)
