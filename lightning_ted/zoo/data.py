"""LightningDataModules for the offline datasets of ``shared/data`` (train / validation / test splits).

Wrap one in :class:`DynamicPruningDataModule` (``datamodule=...``) to prune its training set; from YAML
that is ``data.init_args.datamodule.class_path``. The validation split is carved from the training set
with a fixed generator, so tuning never reads the test split. ``noise_rate`` flips that share of the
training labels (never validation or test) to a different class, for the noisy-label experiments.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, TensorDataset

from lightning_ted.zoo.datasets import load_image_classification, load_sst2


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
