"""Shared pieces of the streamed-path tests: a small litdata dataset, a tiny classifier and a recorder."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from conftest import make_trainer
from lightning.pytorch.callbacks import Callback

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback, pruned_loss

N_SAMPLES, DIM, CLASSES = 600, 8, 3
_TEACHER = np.random.default_rng(0).standard_normal((DIM, CLASSES)).astype(np.float32)


def make_item(i: int) -> dict:
    """Sample ``i``: features from a seeded generator, the label of a fixed linear teacher, and its id."""
    x = np.random.default_rng(1000 + i).standard_normal(DIM).astype(np.float32)
    return {"x": x, "y": int(np.argmax(x @ _TEACHER)), "id": i}


def optimize_dataset(out: Path, n: int = N_SAMPLES, chunk_size: int = 50) -> Path:
    """``litdata.optimize`` the first ``n`` samples into ``out``. It sets the process-wide multiprocessing start
    method (to spawn by default), which would make every later DataLoader worker re-import torch; the
    previous method is put back."""
    import litdata

    before = multiprocessing.get_start_method(allow_none=True)
    try:
        litdata.optimize(
            fn=make_item,
            inputs=list(range(n)),
            output_dir=str(out),
            chunk_size=chunk_size,
            num_workers=1,
            start_method="fork",
        )
    finally:
        multiprocessing.set_start_method(before, force=True)
    return out


class TinyNet(L.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.lr = lr
        self.body = torch.nn.Linear(DIM, 16)
        self.head = torch.nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)))

    def per_sample_loss(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self(batch["x"]), batch["y"], reduction="none")

    def training_step(self, batch: dict, batch_idx: int) -> dict:
        return pruned_loss(self, self.per_sample_loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class StreamRecorder(Callback):
    """Per epoch: the kept indices, and every (index, weight, id in the data) the training steps saw."""

    def __init__(self) -> None:
        self.kept: dict[int, torch.Tensor] = {}
        self.seen: dict[int, list[torch.Tensor]] = {}
        self.weights: dict[int, list[torch.Tensor]] = {}
        self.ids: dict[int, list[torch.Tensor]] = {}
        self.kept_weights: dict[int, torch.Tensor] = {}  # the selection's weights, aligned with kept

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        epoch, ctx = trainer.current_epoch, trainer.datamodule.batch_context
        self.kept.setdefault(epoch, trainer.datamodule.current_selection.indices.clone())
        self.kept_weights.setdefault(epoch, trainer.datamodule.current_selection.weights.clone())
        self.seen.setdefault(epoch, []).append(ctx.index.clone())
        self.weights.setdefault(epoch, []).append(ctx.weight.clone())
        self.ids.setdefault(epoch, []).append(batch["id"].clone())

    def trained(self, epoch: int) -> torch.Tensor:
        """Indices trained with a weight in ``epoch`` (zero-weight DDP padding left out)."""
        index, weight = torch.cat(self.seen[epoch]), torch.cat(self.weights[epoch])
        return index[weight > 0]


def fit_streamed(
    dataset,
    epochs: int = 4,
    method="ted",
    lr: float = 0.1,
    ckpt_path=None,
    callbacks=(),
    seed: int = 0,
    trainer_kwargs=None,
    **dm_kwargs,
):
    """Train ``TinyNet`` through ``Trainer.fit`` with pruning on ``dataset``; returns (dm, recorder, trainer, model)."""
    L.seed_everything(seed, verbose=False)
    dm_kwargs.setdefault("batch_size", 32)
    dm = DynamicPruningDataModule(
        dataset, method=method, schedule=RollerCoasterSchedule(ratio=0.5, beta=0.5, anneal=0.0), **dm_kwargs
    )
    recorder = StreamRecorder()
    options = {"deterministic": False, **(trainer_kwargs or {})}  # the suite's quick CPU Trainer, not pinned
    trainer = make_trainer(epochs, callbacks=[TEDPruningCallback(), recorder, *callbacks], **options)
    model = TinyNet(lr)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return dm, recorder, trainer, model
