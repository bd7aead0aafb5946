"""Third round of a new user's probe (issue 21): each test is named for what the user did and asserts that
the run ends correct or stops with a message naming the problem and what to do."""

from __future__ import annotations

import warnings

import lightning as L  # noqa: I001 (after the test helpers, as the other catalogues)
import pytest
import torch
from conftest import make_trainer, subset
from test_user_mistakes_data import HookedModel, _dm, _fit
from torch.utils.data import DataLoader, TensorDataset, default_collate

from lightning_ted import TED, DynamicPruningDataModule, RollerCoasterSchedule, SeTa
from lightning_ted.methods.base import WeightBoundWarning
from lightning_ted.research import TEDVariant
from lightning_ted.zoo.demo import ImageClassifier


@pytest.fixture(scope="module")
def small(mnist_train):
    return subset(mnist_train, 512)


class KeepsState(L.LightningDataModule):
    """A user DataModule with its own checkpoint state, teardown and prediction loader."""

    def __init__(self, train, collate_fn=None) -> None:
        super().__init__()
        self.train, self.collate_fn = train, collate_fn
        self.restored: dict | None = None
        self.torn_down: list[str] = []
        self.collate_calls = 0

    def _collate(self, items):
        self.collate_calls += 1
        return default_collate(items)

    def train_dataloader(self):
        collate = self._collate if self.collate_fn == "counting" else None
        return DataLoader(self.train, batch_size=64, shuffle=True, collate_fn=collate)

    def predict_dataloader(self):
        return DataLoader(TensorDataset(self.train.tensors[0][:100]), batch_size=50)

    def state_dict(self):
        return {"vocabulary_size": 1234}

    def load_state_dict(self, state_dict):
        self.restored = dict(state_dict)

    def teardown(self, stage: str) -> None:
        self.torn_down.append(stage)


def test_user_asks_device_resident_around_a_datamodule_with_its_own_collate(small):
    dm = DynamicPruningDataModule(datamodule=KeepsState(small, collate_fn="counting"), device_resident=True)
    with pytest.raises(ValueError, match="wrapped DataModule's train loader has a custom collate_fn"):
        _fit(dm, 1)


def test_user_wraps_a_datamodule_that_keeps_checkpoint_state_and_tears_down(small, tmp_path):
    inner = KeepsState(small)
    dm = DynamicPruningDataModule(datamodule=inner, method=TED(), schedule=RollerCoasterSchedule(ratio=0.5))
    trainer = _fit(dm, 2)
    assert inner.torn_down == ["fit"]
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["DynamicPruningDataModule"]["wrapped"] == {"vocabulary_size": 1234}

    again = KeepsState(small)
    resumed = DynamicPruningDataModule(datamodule=again, method=TED(), schedule=RollerCoasterSchedule(ratio=0.5))
    _fit(resumed, 3, ckpt_path=tmp_path / "last.ckpt")
    assert again.restored == {"vocabulary_size": 1234}
    assert torch.equal(resumed.kept_history[:2], dm.kept_history[:2])


def test_user_predicts_through_the_wrapped_datamodule(small):
    inner = KeepsState(small)
    dm = DynamicPruningDataModule(datamodule=inner)
    model = ImageClassifier(one_cycle=False)
    model.predict_step = lambda batch, batch_idx: model(batch[0]).argmax(1)
    predictions = make_trainer(1).predict(model, datamodule=dm)
    assert [p.shape[0] for p in predictions] == [50, 50]
    with pytest.raises(ValueError, match="pass trainer.predict\\(model, dataloaders=...\\)"):
        make_trainer(1).predict(model, datamodule=_dm(small))


@pytest.mark.parametrize("batch_size", [0, -4, 2.5])
def test_user_passes_a_batch_size_that_is_not_positive(small, batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer.*got {batch_size}"):
        _dm(small, batch_size=batch_size)


def test_user_fits_an_unrelated_datamodule_after_a_pruned_fit_and_still_sees_lightnings_hook_warning(small):
    _fit(_dm(small), 1, model=HookedModel())  # our datamodule forwards the hooks: no warning inside

    class Plain(L.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(small, batch_size=64)

        def on_before_batch_transfer(self, batch, dataloader_idx):
            return batch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(1, limit_train_batches=1).fit(HookedModel(), datamodule=Plain())
    assert any("in both `LightningModule` and `LightningDataModule`" in str(w.message) for w in caught)


def test_user_floors_pps_probabilities_above_one_over_max_weight_at_a_high_ratio(small):
    method = TEDVariant(selection="pps", pi_min=0.5)
    with pytest.warns(WeightBoundWarning) as record:
        _fit(_dm(small, ratio=0.7, method=method), 3)
    message = next(str(w.message) for w in record if "prune ratio" in str(w.message))
    assert "pi_min=0.5" in message and "lower pi_min" in message and "max_weight" not in message


def test_user_fits_a_seta_datamodule_again_with_more_epochs(small):
    dm = _dm(small, method=SeTa())
    _fit(dm, 3)
    assert dm.method.max_epochs == 3
    _fit(dm, 5, seed=1)  # a new run of another length: SeTa follows it as the schedule does
    assert dm.method.max_epochs == 5 and dm.schedule.max_epochs == 5
    with pytest.raises(ValueError, match=r"SeTa\(max_epochs=4\) but the Trainer runs max_epochs=5"):
        _fit(_dm(small, method=SeTa(max_epochs=4)), 5)  # a length the user pinned must agree


def test_user_builds_the_train_loader_without_a_trainer(small):
    dm = _dm(small)
    dm.setup("fit")
    with pytest.raises(RuntimeError, match=r"trainer.fit\(model, datamodule=dm\).*max_epochs=10") as info:
        dm.train_dataloader()
    assert "bind(" not in str(info.value)
    pinned = _dm(small, max_epochs=4)
    pinned.setup("fit")
    assert len(pinned.train_dataloader()) == 512 // 64  # with the run length given, it works


def test_user_passes_a_dataloader_as_val_dataset(small):
    dm = _dm(small, val_dataset=DataLoader(subset(small, 128), batch_size=32))
    trainer = _fit(dm, 1, limit_val_batches=1.0)
    assert "val_acc" in trainer.callback_metrics
