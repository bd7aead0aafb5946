"""LightningDataModules for the offline datasets of ``shared/data`` (train / validation / test splits).

Wrap one in :class:`DynamicPruningDataModule` (``datamodule=...``) to prune its training set; from YAML
that is ``data.init_args.datamodule.class_path``. The validation split is carved from the training set
with a fixed generator, so tuning never reads the test split. ``noise_rate`` flips that share of the
training labels (never validation or test) to a different class, for the noisy-label experiments.
CIFAR-10 batches stay uint8 until ``on_after_batch_transfer``, where training batches are augmented
(padded random crop + flip) on whatever device they reached, then every batch is normalised.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, TensorDataset

from lightning_ted.zoo.datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    load_cifar10,
    load_image_classification,
    load_sst2,
)


def flip_labels(labels: torch.Tensor, rate: float, num_classes: int, seed: int) -> torch.Tensor:
    """Boolean mask of the ``round(rate N)`` flipped samples; ``labels`` is changed in place to another class."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise_rate must be in [0, 1), got {rate!r}")
    g = torch.Generator().manual_seed(seed)
    n = labels.numel()
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[torch.randperm(n, generator=g)[: int(round(rate * n))]] = True
    shift = torch.randint(1, num_classes, (n,), generator=g)  # never the original class
    labels[flipped] = (labels[flipped] + shift[flipped]) % num_classes
    return flipped


def draw_crop_flip(
    batch: int, pad: int = 4, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets ``(dy, dx)`` in ``0..2*pad`` and horizontal-flip flags, drawn from ``generator``."""
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    return dy, dx, flip


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Zero-pad ``x`` (B, C, H, W) by ``pad``, take the H x W window at ``(dy, dx)`` per image, mirror where ``flip``.

    Two gathers over the whole batch (rows, then columns), no loop over images; dtype and device are kept,
    so uint8 batches stay uint8 and a GPU batch is cropped on the GPU.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dev = x.device
    rows = dy.to(dev)[:, None] + torch.arange(h, device=dev)  # B x H, rows of the padded image
    cols = dx.to(dev)[:, None] + torch.arange(w, device=dev)  # B x W
    cols = torch.where(flip.to(dev)[:, None], cols.flip(1), cols)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """The standard CIFAR augmentation on a batch: ``pad``-pixel padded random crop and random horizontal flip.

    The random draws come from ``generator`` (a CPU generator; B offsets are copied to ``x``'s device).
    """
    return crop_flip(x, *draw_crop_flip(x.shape[0], pad, generator), pad=pad)


def normalize_images(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (B, C, H, W) pixels to float ``(x / 255 - mean) / std`` per channel."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


class _SplitData(L.LightningDataModule):
    """Shared split / loader logic: subclasses fill ``full_train`` and ``test`` in ``_load``."""

    num_classes = 2

    def __init__(
        self,
        root: str | None = None,
        val_size: int = 1000,
        limit: int | None = None,
        test_limit: int | None = None,
        batch_size: int = 128,
        noise_rate: float = 0.0,
        noise_seed: int = 1234,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        self.root = Path(root) if root is not None else None
        self.val_size, self.limit, self.test_limit = val_size, limit, test_limit
        self.batch_size = batch_size
        self.noise_rate, self.noise_seed, self.split_seed = noise_rate, noise_seed, split_seed
        self.train: TensorDataset | None = None
        self.val: TensorDataset | None = None
        self.test: TensorDataset | None = None
        self.flipped: torch.Tensor | None = None  # which training samples had their label flipped

    def _load(self) -> tuple[TensorDataset, TensorDataset]:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        if self.train is not None:
            return
        full, test = self._load()
        n = len(full)
        if self.val_size >= n:
            raise ValueError(f"val_size={self.val_size} leaves no training samples out of {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        x, y = full.tensors
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        if self.limit is not None:
            train_idx = train_idx[: self.limit]
        train_y = y[train_idx].clone()
        self.flipped = flip_labels(train_y, self.noise_rate, self.num_classes, self.noise_seed)
        self.train = TensorDataset(x[train_idx], train_y)
        self.val = TensorDataset(x[val_idx], y[val_idx])
        if self.test_limit is not None:
            test = TensorDataset(*(t[: self.test_limit] for t in test.tensors))
        self.test = test

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=1000)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=1000)


class ImageData(_SplitData):
    """MNIST or Fashion-MNIST (``name="MNIST"`` / ``"FashionMNIST"``), normalised ``(1, 28, 28)`` images."""

    num_classes = 10

    def __init__(self, name: str = "MNIST", **kwargs) -> None:
        super().__init__(**kwargs)
        self.name = name

    def _load(self) -> tuple[TensorDataset, TensorDataset]:
        train = load_image_classification(self.name, self.root, train=True)
        return train, load_image_classification(self.name, self.root, train=False)


class SST2Data(_SplitData):
    """SST-2 sentences as padded token ids with a whitespace vocabulary built from the training file.

    ``vocab_size`` (ids including padding and unknown) is known after ``setup``; a model's embedding
    table needs at least that many rows.
    """

    num_classes = 2

    def __init__(self, max_len: int = 56, batch_size: int = 64, **kwargs) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.max_len = max_len
        self.vocab_size: int | None = None

    def _load(self) -> tuple[TensorDataset, TensorDataset]:
        train, vocab = load_sst2(self.root, "train", max_len=self.max_len)
        test, _ = load_sst2(self.root, "test", vocab=vocab, max_len=self.max_len)
        self.vocab_size = len(vocab) + 2
        rank_zero_info(f"SST2Data: vocab_size={self.vocab_size}")
        return train, test


class CIFAR10Data(_SplitData):
    """CIFAR-10 with the standard augmentation on batched uint8 tensors, after the batch reached its device.

    Images stay uint8 in memory and in the loader (4x less to copy than float). In
    ``on_after_batch_transfer`` a *training* batch gets a 4-pixel padded random crop and a random
    horizontal flip (vectorised, on the batch's device); then every batch is normalised with the
    training-set channel statistics. The augmentation draws come from a generator seeded with
    ``aug_seed`` (default: the Lightning seed), so a seeded run is reproducible. ``limit`` keeps a fixed
    random subset of the training split (after the validation split is carved out); ``exact_only``
    drops the 121 images that are not pixel-exact (see :func:`load_cifar10`).
    """

    num_classes = 10

    def __init__(self, augment: bool = True, aug_seed: int | None = None, exact_only: bool = False, **kwargs) -> None:
        kwargs.setdefault("val_size", 5000)
        super().__init__(**kwargs)
        self.augment, self.aug_seed, self.exact_only = augment, aug_seed, exact_only
        self._generator: torch.Generator | None = None

    def _load(self) -> tuple[TensorDataset, TensorDataset]:
        train = load_cifar10(self.root, train=True, exact_only=self.exact_only)
        x, y = load_cifar10(self.root, train=False, exact_only=self.exact_only).tensors
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # the file is in class order,
        return train, TensorDataset(x[order], y[order])  # so that test_limit keeps every class

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if x.dtype != torch.uint8:
            raise TypeError(f"CIFAR10Data expects uint8 image batches, got {x.dtype}; do not normalise beforehand")
        if self.augment and self.trainer is not None and self.trainer.training:
            if self._generator is None:
                seed = self.aug_seed if self.aug_seed is not None else torch.initial_seed()
                self._generator = torch.Generator().manual_seed(int(seed) % 2**63)
            x = random_crop_flip(x, 4, self._generator)
        return normalize_images(x, CIFAR10_MEAN, CIFAR10_STD), y
