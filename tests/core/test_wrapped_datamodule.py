"""DynamicPruningDataModule wrapping a user's LightningDataModule: its loaders' settings and hooks are kept."""

from __future__ import annotations

import lightning as L
import torch
from conftest import make_trainer, subset
from test_end_to_end import EpochRecorder
from torch.utils.data import DataLoader, default_collate

from lightning_ted import TED, DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.zoo.demo import ImageClassifier


class MNISTSubsetDataModule(L.LightningDataModule):
    """A plain user datamodule with its own collate_fn and an on_after_batch_transfer hook."""

    def __init__(self, train, val) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.collate_calls = 0
        self.hook_calls = 0
        self.setup_stages: list[str] = []

    def setup(self, stage: str) -> None:
        self.setup_stages.append(stage)

    def _collate(self, items):
        self.collate_calls += 1
        return default_collate(items)

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=40, shuffle=True, collate_fn=self._collate)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=100)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.hook_calls += 1
        return batch


def test_wrapping_a_lightning_datamodule(mnist_train, mnist_test):
    inner = MNISTSubsetDataModule(subset(mnist_train, 800), subset(mnist_test, 300))
    dm = DynamicPruningDataModule(datamodule=inner, method=TED(), schedule=RollerCoasterSchedule(ratio=0.5))
    rec = EpochRecorder()
    L.seed_everything(0, verbose=False)
    trainer = make_trainer(3, callbacks=[TEDPruningCallback(), rec], limit_val_batches=1.0)
    trainer.fit(ImageClassifier(one_cycle=False), datamodule=dm)

    assert inner.setup_stages == ["fit"]
    assert dm.batch_size == 40 and dm.state.num_samples == 800  # adopted from the inner train loader
    assert inner.collate_calls > 0  # the user's collate_fn builds the data part of every batch
    assert "val_acc" in trainer.callback_metrics  # the inner val loader ran unchanged
    n_val_batches = 3 * 3  # 300 val samples / 100, three epochs
    n_train_batches = sum(len(torch.cat(v)) // 40 + (len(torch.cat(v)) % 40 > 0) for v in rec.seen.values())
    assert inner.hook_calls == n_train_batches + n_val_batches  # the inner hook saw every batch
    assert int(dm.kept_history[1]) == 800 - round(dm.schedule.prune_ratio(1) * 800) < 800
    for epoch, kept in rec.kept.items():
        assert torch.equal(torch.cat(rec.seen[epoch]).sort().values, kept.sort().values)


def test_user_reads_an_attribute_of_the_wrapped_datamodule():
    inner = MNISTSubsetDataModule(None, None)
    inner.num_labels = 10
    dm = DynamicPruningDataModule(datamodule=inner)
    assert dm.num_labels == 10  # read through to the wrapped module
    assert dm.inner is inner
    try:
        dm.no_such_attribute  # noqa: B018
    except AttributeError as err:
        assert "no_such_attribute" in str(err)
    else:
        raise AssertionError("a missing attribute must still raise AttributeError")
