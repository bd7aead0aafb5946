"""The callback and datamodule work under the standalone ``pytorch_lightning`` Trainer as under ``lightning``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback, pruned_loss

pl = pytest.importorskip("pytorch_lightning")
import lightning.pytorch as lp  # noqa: E402


def _module_class(package):
    class Model(package.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
            self.fc = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.fc(self.body(x))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return pruned_loss(self, F.cross_entropy(self(x), y, reduction="none"))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Model


def _fit(package, logger=False):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(256, 8, generator=gen), torch.randint(0, 3, (256,), generator=gen))
    dm = DynamicPruningDataModule(data, batch_size=32, schedule=RollerCoasterSchedule(ratio=0.5, beta=0.5))
    model = _module_class(package)()
    trainer = package.Trainer(
        max_epochs=4,
        accelerator="cpu",
        callbacks=[TEDPruningCallback()],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, datamodule=dm)
    return dm, model


def test_user_trains_with_the_standalone_pytorch_lightning_trainer():
    dm, _ = _fit(pl)
    assert bool((dm.state.seen > 0).all()), "every sample is scored in the full-data warm-up epoch"
    assert dm.saved_fraction(3) > 0.1, "the pruned epochs kept fewer samples"


def test_both_lightning_packages_give_the_same_run():
    dm_pl, model_pl = _fit(pl)
    dm_lp, model_lp = _fit(lp)
    assert torch.equal(dm_pl.kept_history, dm_lp.kept_history)
    assert torch.equal(dm_pl.state.score, dm_lp.state.score)
    for a, b in zip(model_pl.parameters(), model_lp.parameters(), strict=True):
        assert torch.equal(a, b)


def test_user_logs_with_the_standalone_pytorch_lightning_wandb_logger(tmp_path, monkeypatch):
    """pytorch_lightning's own WandbLogger gets the W&B extras: the score histogram and the epoch axis."""
    import wandb

    from lightning_ted.observe.run_history import epoch_rows, read_wandb_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    try:
        _fit(pl, logger=pl.loggers.WandbLogger(project="lightning-ted-test", save_dir=str(tmp_path), offline=True))
    finally:
        wandb.finish()
    run = read_wandb_run(tmp_path / "wandb")
    assert {"name": "prune/*", "step_metric": "epoch"} in run["metrics"]
    rows = epoch_rows(run["history"])
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert all(r["prune/score_histogram"]["_type"] == "histogram" for r in rows)
