"""Demo: a small CNN on MNIST, trained on the full data and with TED pruning, side by side.

``python -m lightning_ted.demo`` prints accuracy, fraction of sample-passes saved, wall time and
speedup for each run. Everything runs in one process on the same seed, so the ratios are comparable.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F

from lightning_ted.adapters.callback import TEDPruningCallback
from lightning_ted.adapters.datamodule import DynamicPruningDataModule
from lightning_ted.adapters.loss import pruned_loss
from lightning_ted.adapters.steps import total_optimizer_steps
from lightning_ted.core.schedules import RollerCoasterSchedule
from lightning_ted.methods import TED, FullData, PruningMethod
from lightning_ted.zoo.datasets import load_image_classification
from lightning_ted.zoo.models import SmallCNN


class ImageClassifier(L.LightningModule):
    """Cross-entropy classifier whose ``training_step`` shows the two-line pruning change."""

    def __init__(self, lr: float = 0.05, width: int = 16, one_cycle: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = SmallCNN(width=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def per_sample_loss(self, batch):  # change 1: one loss per sample (TED's re-scoring pass calls it too)
        x, y = batch
        return F.cross_entropy(self(x), y, reduction="none")

    def training_step(self, batch, batch_idx):
        return pruned_loss(self, self.per_sample_loss(batch))  # change 2: weight them, hand them over

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def _evaluate(self, batch, split: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{split}_loss", F.cross_entropy(logits, y))
        self.log(f"{split}_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9, nesterov=True)
        if not self.hparams.one_cycle:
            return opt
        # the true step count, pruned or not (a pruned run takes fewer steps than full-data epochs)
        total = total_optimizer_steps(self.trainer)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@dataclass
class RunResult:
    name: str
    accuracy: float
    saved_fraction: float
    fit_seconds: float
    kept_per_epoch: list[int]


def timed_fit(
    model: L.LightningModule,
    datamodule: DynamicPruningDataModule,
    max_epochs: int,
    callbacks: Sequence[L.Callback] = (),
    accelerator: str = "cpu",
    **trainer_kwargs,
) -> tuple[L.Trainer, float]:
    """Fit ``model`` on one device with the pruning callback and no logging, checkpoints or progress bar.

    Returns the trainer (for ``test``) and the fit's wall time: the benchmarks compare these times side
    by side, so every one of them builds the same quiet trainer here.
    """
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        callbacks=[TEDPruningCallback(), *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    return trainer, time.perf_counter() - start


def run(
    method: PruningMethod,
    *,
    name: str,
    epochs: int,
    ratio: float,
    beta: float,
    seed: int,
    train_set,
    test_set,
    batch_size: int = 128,
    lr: float = 0.05,
    **trainer_kwargs,
) -> RunResult:
    """Train one model with ``method`` and return its test accuracy, saved fraction and fit time."""
    L.seed_everything(seed, workers=True, verbose=False)
    model = ImageClassifier(lr=lr)
    dm = DynamicPruningDataModule(
        train_set,
        method=method,
        schedule=RollerCoasterSchedule(ratio=ratio, beta=beta),
        test_dataset=test_set,
        batch_size=batch_size,
        seed=seed,
    )
    trainer, seconds = timed_fit(model, dm, epochs, **trainer_kwargs)
    acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"]
    return RunResult(name, 100.0 * acc, dm.run.saved_fraction(epochs - 1), seconds, dm.run.kept_history.tolist())


def format_table(results: list[RunResult], baseline: RunResult) -> str:
    """Markdown table with speedup relative to ``baseline`` (measured in the same process)."""
    lines = [
        "| run | test acc (%) | sample-passes saved | fit time (s) | speedup | ideal speedup |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.accuracy:.2f} | {100 * r.saved_fraction:.1f}% | {r.fit_seconds:.1f} | "
            f"{baseline.fit_seconds / r.fit_seconds:.2f}x | {1 / (1 - r.saved_fraction):.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: ../shared/data)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ratio", type=float, default=0.5, help="TED target prune ratio s")
    parser.add_argument("--beta", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*Total length of .* across ranks is zero.*")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    train_set = load_image_classification("MNIST", args.data_root, train=True, limit=args.limit)
    test_set = load_image_classification("MNIST", args.data_root, train=False)
    common = dict(
        epochs=args.epochs, ratio=args.ratio, beta=args.beta, seed=args.seed, train_set=train_set, test_set=test_set
    )
    full = run(FullData(), name="full", **common)
    ted = run(TED(), name=f"ted (s={args.ratio})", **common)
    print(f"MNIST, SmallCNN, {args.epochs} epochs, seed {args.seed}, roller-coaster s={args.ratio} beta={args.beta}")
    print(format_table([full, ted], full))


if __name__ == "__main__":
    main()
