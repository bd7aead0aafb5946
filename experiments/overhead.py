"""Overhead benchmark: training steps/s of plain Lightning vs the TED callback at pruning ratio 0.

    python experiments/overhead.py [--samples 10000] [--epochs 3] [--repeats 5]

At ratio 0 every sample is trained every epoch, so any slowdown is the price of the machinery itself:
index/weight collation, the head hooks, the per-sample Taylor terms, buffering, the epoch-end score
update and selection, and the per-epoch loader rebuild. The plain run trains the same model on a shuffled
``DataLoader`` with a mean cross-entropy. Runs alternate plain / callback in one process; the first epoch
of each run is warm-up and not timed. A step's cost is the median interval between step starts (robust to
the bursts of a shared machine); per-epoch work is what the timed epochs took beyond their steps, spread
over the steps. Overhead = callback cost / plain cost - 1, medians over the interleaved runs. Writes
``experiments/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_ted import TED, ConstantSchedule, DynamicPruningDataModule, TEDPruningCallback, pruned_loss
from lightning_ted.zoo.datasets import load_image_classification
from lightning_ted.zoo.demo import ImageClassifier

RESULTS = Path(__file__).resolve().parent / "results"


class WideMLP(nn.Module):
    """A wider model: three 1024-unit layers, so the head reads 1024 features (the CNN's reads 64)."""

    def __init__(self, width: int = 1024, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.body(x)))


class Classifier(ImageClassifier):
    """``ImageClassifier`` with a chosen network; ``pruned=False`` returns the plain mean loss."""

    def __init__(self, net: str, pruned: bool) -> None:
        super().__init__(lr=0.05, one_cycle=False)
        if net == "wide-mlp":
            self.model = WideMLP()
        self.pruned = pruned

    def training_step(self, batch, batch_idx):
        x, y = batch
        if not self.pruned:
            return F.cross_entropy(self(x), y)
        return pruned_loss(self, F.cross_entropy(self(x), y, reduction="none"))


class StepTimer(Callback):
    """Wall-clock intervals between consecutive training-step starts, after the warm-up epoch.

    The median interval is one step's cost (data, forward, backward, optimizer, the callback's step
    hook), robust to the bursts of a shared machine; what the timed epochs took beyond their steps at
    that median is the per-epoch cost (score update, selection, loader rebuild).
    """

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.begin = self.end = 0.0
        self.intervals: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.begin = time.perf_counter()
        self.starts = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch >= 1:
            now = time.perf_counter()
            if self.starts:
                self.intervals.append(now - self.starts[-1])
            self.starts.append(now)

    def on_train_end(self, trainer, pl_module):
        self.end = time.perf_counter()

    def costs(self) -> tuple[float, float]:
        """(seconds per step, seconds per step of per-epoch work amortized over the epoch's steps)."""
        step = statistics.median(self.intervals)
        steps = len(self.intervals) + 1
        return step, max(0.0, (self.end - self.begin) / steps - step)


def _costs(net: str, train: TensorDataset, with_callback: bool, epochs: int, batch_size: int) -> tuple[float, float]:
    L.seed_everything(0, verbose=False)
    model = Classifier(net, pruned=with_callback)
    timer = StepTimer()
    callbacks = [TEDPruningCallback(), timer] if with_callback else [timer]
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    if with_callback:
        schedule = ConstantSchedule(ratio=0.0)
        dm = DynamicPruningDataModule(train, method=TED(), schedule=schedule, batch_size=batch_size)
        trainer.fit(model, datamodule=dm)
    else:
        loader = DataLoader(train, batch_size=batch_size, shuffle=True)
        trainer.fit(model, train_dataloaders=loader)
    return timer.costs()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved plain/callback pairs per model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--nets", nargs="+", default=["cnn", "wide-mlp"])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    train = load_image_classification("MNIST", train=True, limit=args.samples)
    lines = [
        "| model | plain steps/s | callback steps/s (ratio 0) | overhead per step | per-epoch work / step cost, "
        "plain | same, callback | total overhead |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for net in args.nets:
        plain, ours = [], []
        for _ in range(args.repeats):
            plain.append(_costs(net, train, False, args.epochs, args.batch_size))
            ours.append(_costs(net, train, True, args.epochs, args.batch_size))
        p_step, o_step = statistics.median(p[0] for p in plain), statistics.median(o[0] for o in ours)
        p_epoch, o_epoch = statistics.median(p[1] for p in plain), statistics.median(o[1] for o in ours)
        total = (o_step + o_epoch) / (p_step + p_epoch) - 1.0
        lines.append(
            f"| {net} | {1 / p_step:.1f} | {1 / o_step:.1f} | {100 * (o_step / p_step - 1):+.1f}% "
            f"| {100 * p_epoch / p_step:.1f}% | {100 * o_epoch / o_step:.1f}% | {100 * total:+.1f}% |"
        )
        print(lines[-1], flush=True)
    header = (
        f"MNIST ({args.samples} samples, batch {args.batch_size}), {args.epochs - 1} timed epochs after 1 warm-up, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n\n"
    )
    text = header + "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "overhead.md").write_text(text)


if __name__ == "__main__":
    main()
