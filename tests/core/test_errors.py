"""Every bad input named in the spec fails with an error that says what to fix."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer, subset
from torch.utils.data import IterableDataset

from lightning_ted import (
    TED,
    DynamicPruningDataModule,
    FullData,
    RollerCoasterSchedule,
    TEDPruningCallback,
    pruned_loss,
)
from lightning_ted.research import TEDVariant
from lightning_ted.zoo.demo import ImageClassifier


@pytest.fixture(scope="module")
def tiny(mnist_train):
    return subset(mnist_train, 256)


def _fit(model, train, callbacks=None, epochs=1, method=None, **trainer_kwargs):
    dm = DynamicPruningDataModule(
        train,
        method=method or TED(),
        schedule=RollerCoasterSchedule(ratio=0.5, warmup_epochs=1),
        batch_size=64,
    )
    trainer = make_trainer(epochs, callbacks=callbacks or [TEDPruningCallback()], **trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    return dm, trainer


class MeanLossOnly(ImageClassifier):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)


class ShortPerSample(ImageClassifier):
    def training_step(self, batch, batch_idx):
        x, y = batch
        losses = F.cross_entropy(self(x), y, reduction="none")
        return {"loss": losses.mean(), "per_sample_loss": losses[:-1].detach()}


class HelperWrongLength(ImageClassifier):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return pruned_loss(self, F.cross_entropy(self(x), y, reduction="none")[:-1])


class HelperNotPerSample(ImageClassifier):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return pruned_loss(self, F.cross_entropy(self(x), y))


class NaNForSomeSamples(ImageClassifier):
    """Reports NaN as the per-sample loss of every sample whose label is 3 (training stays finite)."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = pruned_loss(self, F.cross_entropy(self(x), y, reduction="none"))
        out["per_sample_loss"] = torch.where(y == 3, torch.nan, out["per_sample_loss"])
        return out


def test_training_step_without_per_sample_loss(tiny):
    with pytest.raises(KeyError, match="per_sample_loss.*reduction='none'"):
        _fit(MeanLossOnly(one_cycle=False), tiny)


def test_per_sample_loss_of_wrong_length(tiny):
    with pytest.raises(ValueError, match="one loss per sample"):
        _fit(ShortPerSample(one_cycle=False), tiny)
    with pytest.raises(ValueError, match="63 entries but the batch holds 64"):
        _fit(HelperWrongLength(one_cycle=False), tiny)
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        _fit(HelperNotPerSample(one_cycle=False), tiny)


class Stream(IterableDataset):
    def __iter__(self):
        yield from range(10)


def test_iterable_dataset_and_unindexable_dataset():
    with pytest.raises(TypeError, match="IterableDataset.*map-style"):
        DynamicPruningDataModule(Stream())
    with pytest.raises(TypeError, match="__getitem__"):
        DynamicPruningDataModule(object())
    with pytest.raises(ValueError, match="exactly one of train_dataset or datamodule"):
        DynamicPruningDataModule()


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_outside_unit_interval(ratio):
    with pytest.raises(ValueError, match=r"prune ratio must be in \[0, 1\)"):
        RollerCoasterSchedule(ratio=ratio)


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_non_positive_beta(beta):
    with pytest.raises(ValueError, match="beta must be a positive"):
        RollerCoasterSchedule(beta=beta)


def test_bad_method_options():
    with pytest.raises(ValueError, match="q must be in"):
        TED(q=0.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        TED(alpha=1.0)
    with pytest.raises(ValueError, match="reference must be one of"):
        TEDVariant(reference="global")
    with pytest.raises(ValueError, match="unknown pruning method 'tedd'"):
        DynamicPruningDataModule(torch.utils.data.TensorDataset(torch.zeros(3)), method="tedd")


def test_head_that_cannot_be_found(tiny):
    with pytest.raises(ValueError, match="head layer 'model.fc9' not found.*model.fc2"):
        _fit(ImageClassifier(one_cycle=False), tiny, callbacks=[TEDPruningCallback(head="model.fc9")])
    with pytest.raises(TypeError, match="is a Conv2d.*nn.Linear"):
        _fit(ImageClassifier(one_cycle=False), tiny, callbacks=[TEDPruningCallback(head="model.conv1")])


def test_reload_dataloaders_setting(tiny):
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs=2"):
        _fit(ImageClassifier(one_cycle=False), tiny, reload_dataloaders_every_n_epochs=2)
    _, trainer = _fit(ImageClassifier(one_cycle=False), tiny)  # 0 (the default) is set to 1 for the user
    assert trainer.reload_dataloaders_every_n_epochs == 1


def test_callback_without_pruning_datamodule(tiny):
    trainer = make_trainer(1, callbacks=[TEDPruningCallback()])
    with pytest.raises(TypeError, match="DynamicPruningDataModule"):
        trainer.fit(ImageClassifier(one_cycle=False), train_dataloaders=torch.utils.data.DataLoader(tiny))


def test_nan_losses_never_enter_the_scores(tiny):
    dm, trainer = _fit(NaNForSomeSamples(one_cycle=False), tiny, epochs=2)
    labels = tiny.tensors[1]
    threes = labels == 3
    assert threes.any()
    assert dm.state.nonfinite_count == 2 * int(threes.sum())  # unscored samples are always kept
    assert trainer.callback_metrics["prune/nonfinite_losses"].item() == 2 * int(threes.sum())
    assert torch.isinf(dm.state.score[threes]).all() and (dm.state.seen[threes] == 0).all()
    assert torch.isfinite(dm.state.score[~threes]).all()


def test_checkpoint_from_other_dataset_size_or_method(tiny, mnist_train):
    dm, _ = _fit(ImageClassifier(one_cycle=False), tiny)
    state = dm.state_dict()
    other = DynamicPruningDataModule(subset(mnist_train, 300), method=TED(), batch_size=64)
    other.setup("fit")
    with pytest.raises(ValueError, match="256 samples but this training set has 300"):
        other.load_state_dict(state)
    full = DynamicPruningDataModule(tiny, method=FullData(), batch_size=64)
    full.setup("fit")
    with pytest.raises(ValueError, match="method 'ted' but this run uses 'full'"):
        full.load_state_dict(state)


class Growing(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base, self.extra = base, 0

    def __len__(self):
        return len(self.base) + self.extra

    def __getitem__(self, i):
        return self.base[i % len(self.base)]


class GrowAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.datamodule.train_dataset.extra = 5


def test_dataset_length_change_is_detected(tiny):
    with pytest.raises(RuntimeError, match="changed length from 256 to 261"):
        _fit(
            ImageClassifier(one_cycle=False),
            Growing(tiny),
            epochs=2,
            callbacks=[TEDPruningCallback(), GrowAfterFirstEpoch()],
        )
