"""Issue 22, item 1: a user's DataModule and model written against ``lightning`` or ``pytorch_lightning``,
wrapped and trained under either package's Trainer (Lightning itself requires the model to come from the
Trainer's package; the wrapped DataModule may come from either)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, pruned_loss

pl = pytest.importorskip("pytorch_lightning")
import lightning as L  # noqa: E402

PACKAGES = {"lightning": L, "pytorch_lightning": pl}


def user_datamodule(package):
    class UserData(package.LightningDataModule):
        """Saves its hyperparameters, has a validation loader and its own batch hook."""

        def __init__(self, batch_size: int = 32) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.hook_calls = 0

        def setup(self, stage: str) -> None:
            gen = torch.Generator().manual_seed(0)
            self.data = TensorDataset(torch.randn(192, 8, generator=gen), torch.randint(0, 3, (192,), generator=gen))

        def train_dataloader(self):
            return DataLoader(self.data, batch_size=self.hparams.batch_size, shuffle=True)

        def val_dataloader(self):
            return DataLoader(self.data, batch_size=96)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            self.hook_calls += 1
            x, y = batch
            return x * 0.5, y

    return UserData()


def user_model(package):
    class UserModel(package.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 3)
            self.val_batches = 0

        def training_step(self, batch, batch_idx):
            x, y = batch
            return pruned_loss(self, F.cross_entropy(self.fc(x), y, reduction="none"))

        def validation_step(self, batch, batch_idx):
            self.val_batches += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return UserModel()


@pytest.mark.parametrize("data_package", list(PACKAGES))
@pytest.mark.parametrize("trainer_package", list(PACKAGES))
def test_user_wraps_a_datamodule_of_either_package_under_either_trainer(data_package, trainer_package):
    """The four pairs train: the wrapped DataModule's own batch hook and validation loader run, its
    hyperparameters are its own, and the pruned epochs keep fewer samples."""
    package = PACKAGES[trainer_package]
    inner = user_datamodule(PACKAGES[data_package])
    dm = DynamicPruningDataModule(datamodule=inner, schedule=RollerCoasterSchedule(ratio=0.5, beta=0.5))
    model = user_model(package)
    trainer = package.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    batches = sum(-(-int(k) // 32) for k in dm.kept_history)
    assert inner.hook_calls == batches + model.val_batches, "the user's on_after_batch_transfer ran on every batch"
    assert model.val_batches == 3 * 2, "the wrapped val_dataloader ran after every epoch"
    assert dict(inner.hparams) == {"batch_size": 32}
    assert dm.kept_history.tolist()[0] == 192 and all(int(k) < 192 for k in dm.kept_history[1:])


def test_user_passes_a_model_of_the_other_package_and_lightning_names_it():
    """A ``pytorch_lightning`` model under the ``lightning`` Trainer is Lightning's own refusal (the README says
    the model must come from the Trainer's package); pruning does not hide it."""
    dm = DynamicPruningDataModule(datamodule=user_datamodule(L))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False)
    with pytest.raises(TypeError, match="LightningModule"):
        trainer.fit(user_model(pl), datamodule=dm)
