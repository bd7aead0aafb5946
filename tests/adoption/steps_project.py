"""A script that can switch pruning off and sizes its OneCycleLR with one call either way (issue 22, item 3).

``python tests/adoption/steps_project.py OUT DEVICES PRUNE ACCUMULATE LIMIT`` trains on DEVICES CPU processes
(DDP for 2) and writes, from every rank, the step count the call predicted in ``configure_optimizers`` and
the optimizer steps the run took (``OUT/rank{r}.pt``); the tests import :func:`fit` for one process.
"""

from __future__ import annotations

import sys

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import lightning_ted
from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, pruned_loss


class Data(L.LightningDataModule):
    def setup(self, stage: str) -> None:
        gen = torch.Generator().manual_seed(0)
        self.data = TensorDataset(torch.randn(250, 8, generator=gen), torch.randint(0, 3, (250,), generator=gen))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=16, shuffle=True)


class Model(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)
        self.predicted: int | None = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        losses = F.cross_entropy(self.fc(x), y, reduction="none")
        pruning = isinstance(self.trainer.datamodule, DynamicPruningDataModule)
        return pruned_loss(self, losses) if pruning else losses.mean()

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        self.predicted = lightning_ted.total_optimizer_steps(self.trainer)  # the same line, pruned or not
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=self.predicted)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def fit(
    prune: bool, devices: int = 1, method: str = "ted", warmup_epochs: int = 1, callbacks=(), **trainer_options
) -> tuple[int, int, L.Trainer]:
    """(predicted steps, optimizer steps taken, trainer) of one run."""
    L.seed_everything(0, verbose=False)
    data = Data()
    if prune:
        schedule = RollerCoasterSchedule(ratio=0.6, beta=0.5, warmup_epochs=warmup_epochs)
        data = DynamicPruningDataModule(datamodule=data, method=method, schedule=schedule)
    model = Model()
    trainer = L.Trainer(
        max_epochs=4, accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
        **trainer_options,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    return model.predicted, trainer.global_step, trainer


if __name__ == "__main__":
    out, devices, prune, accumulate, limit = sys.argv[1:6]
    torch.set_num_threads(1)
    limit_value = float(limit) if "." in limit else int(limit)
    predicted, taken, trainer = fit(prune == "1", int(devices), accumulate_grad_batches=int(accumulate),
                                    limit_train_batches=limit_value)  # fmt: skip
    torch.save({"predicted": predicted, "taken": taken}, f"{out}/rank{trainer.global_rank}.pt")
