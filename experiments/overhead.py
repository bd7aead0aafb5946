"""Overhead benchmark: training steps/s of plain Lightning vs the TED callback at pruning ratio 0.

    python experiments/overhead.py [--samples 10000] [--epochs 3] [--repeats 5] [--paths standard device]

At ratio 0 every sample is trained every epoch, so any slowdown is the price of the machinery itself:
index/weight collation, the head hooks, the per-sample Taylor terms, buffering, the epoch-end score
update and selection, and the per-epoch loader rebuild. The plain run trains the same model on a shuffled
``DataLoader`` with a mean cross-entropy. Runs alternate plain / callback in one process; the first epoch
of each run is warm-up and not timed. A step's cost is the median interval between step starts (robust to
the bursts of a shared machine); per-epoch work is what the timed epochs took beyond their steps, spread
over the steps. Overhead = callback cost / plain cost - 1, medians over the interleaved runs, with the
range over the repeats of each run's ratio to its neighbouring plain run. ``--paths device`` also times the
callback on the device-resident loader (``device_resident=True``). Writes ``experiments/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import logging
import math
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
from lightning_ted.data.loader import KeptDataset
from lightning_ted.methods.taylor import HeadCapture
from lightning_ted.zoo.datasets import load_image_classification
from lightning_ted.zoo.demo import ImageClassifier

RESULTS = Path(__file__).resolve().parent / "results"

#: step-path functions the profile times (each call's wall time, inclusive of what it calls)
PROFILED = {
    "batch gather (standard loader)": (KeptDataset, "__getitems__"),
    "head forward hook": (HeadCapture, "_on_forward"),
    "head gradient hook": (HeadCapture, "_on_grad"),
    "callback on_train_batch_start": (TEDPruningCallback, "on_train_batch_start"),
    "callback on_train_batch_end (Taylor terms)": (TEDPruningCallback, "on_train_batch_end"),
    "datamodule on_after_batch_transfer": (DynamicPruningDataModule, "on_after_batch_transfer"),
    "train_dataloader (selection, loader rebuild)": (DynamicPruningDataModule, "train_dataloader"),
    "callback on_train_epoch_end (score update, metrics)": (TEDPruningCallback, "on_train_epoch_end"),
}


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

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self.starts: list[float] = []
        self.begin = self.end = 0.0
        self.intervals: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.begin = self.clock()
        self.starts = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch >= 1:
            now = self.clock()
            if self.starts:
                self.intervals.append(now - self.starts[-1])
            self.starts.append(now)

    def on_train_end(self, trainer, pl_module):
        self.end = self.clock()

    def costs(self) -> tuple[float, float]:
        """(seconds per step, seconds per step of per-epoch work amortized over the epoch's steps)."""
        step = statistics.median(self.intervals)
        steps = len(self.intervals) + 1
        return step, max(0.0, (self.end - self.begin) / steps - step)


def _costs(
    net: str,
    train: TensorDataset,
    with_callback: bool,
    epochs: int,
    batch_size: int,
    path: str = "standard",
    clock=time.perf_counter,
) -> tuple[float, float]:
    L.seed_everything(0, verbose=False)
    model = Classifier(net, pruned=with_callback)
    timer = StepTimer(clock)
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
        dm = DynamicPruningDataModule(
            train, method=TED(), schedule=schedule, batch_size=batch_size, device_resident=path == "device"
        )
        trainer.fit(model, datamodule=dm)
    else:
        loader = DataLoader(train, batch_size=batch_size, shuffle=True)
        trainer.fit(model, train_dataloaders=loader)
    return timer.costs()


def profile_step_path(
    net: str, train: TensorDataset, epochs: int, batch_size: int, path: str, clock=time.perf_counter
) -> list[str]:
    """Wall time per training step spent in each step-path function of the package during one callback run
    (the functions are wrapped with a timer for the run), next to the median step cost itself."""
    spent = dict.fromkeys(PROFILED, 0.0)
    originals = {label: getattr(owner, name) for label, (owner, name) in PROFILED.items()}

    def timed(label, fn):
        def wrapper(*args, **kwargs):
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += clock() - start

        return wrapper

    for label, (owner, name) in PROFILED.items():
        setattr(owner, name, timed(label, originals[label]))
    try:
        steps = math.ceil(len(train) / batch_size) * epochs
        step, _ = _costs(net, train, True, epochs, batch_size, path, clock)
    finally:
        for label, (owner, name) in PROFILED.items():
            setattr(owner, name, originals[label])
    rows = [f"| {net} | {path} | median step (all of it) | {1e3 * step:.2f} | 100% |"]
    for label, seconds in spent.items():
        if seconds > 0:
            rows.append(
                f"| {net} | {path} | {label} | {1e3 * seconds / steps:.3f} | {100 * seconds / steps / step:.2f}% |"
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved plain/callback pairs per model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--nets", nargs="+", default=["cnn", "wide-mlp"])
    parser.add_argument("--paths", nargs="+", default=["standard"], choices=["standard", "device"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: this process's CPU time (with --threads 1, robust to other jobs on a shared machine)",
    )
    parser.add_argument("--profile", action="store_true", help="also time each step-path function (one run per path)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    train = load_image_classification("MNIST", train=True, limit=args.samples)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    lines = [
        "| model | data path | plain steps/s | callback steps/s (ratio 0) | overhead per step | per-epoch work / "
        "step cost, plain | same, callback | total overhead | range over repeats |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for net in args.nets:
        plain, ours = [], {path: [] for path in args.paths}
        for _ in range(args.repeats):  # interleaved: plain, then the callback on each path
            plain.append(_costs(net, train, False, args.epochs, args.batch_size, clock=clock))
            for path in args.paths:
                ours[path].append(_costs(net, train, True, args.epochs, args.batch_size, path, clock))
        p_step, p_epoch = statistics.median(p[0] for p in plain), statistics.median(p[1] for p in plain)
        for path, runs in ours.items():
            o_step, o_epoch = statistics.median(o[0] for o in runs), statistics.median(o[1] for o in runs)
            total = (o_step + o_epoch) / (p_step + p_epoch) - 1.0
            pairs = [100 * ((o[0] + o[1]) / (p[0] + p[1]) - 1) for p, o in zip(plain, runs, strict=True)]
            lines.append(
                f"| {net} | {path} | {1 / p_step:.1f} | {1 / o_step:.1f} | {100 * (o_step / p_step - 1):+.1f}% "
                f"| {100 * p_epoch / p_step:.1f}% | {100 * o_epoch / o_step:.1f}% | {100 * total:+.1f}% "
                f"| {min(pairs):+.1f}% .. {max(pairs):+.1f}% |"
            )
            print(lines[-1], flush=True)
    header = (
        f"MNIST ({args.samples} samples, batch {args.batch_size}), {args.epochs - 1} timed epochs after 1 warm-up, "
        f"{args.repeats} interleaved repeats, {args.clock} clock, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n\n"
    )
    text = header + "\n".join(lines) + "\n"
    if args.profile:
        rows = ["| model | data path | where | ms per step | share of a step |", "|---|---|---|---:|---:|"]
        for net in args.nets:
            for path in args.paths:
                rows += profile_step_path(net, train, args.epochs, args.batch_size, path, clock)
        text += "\nTime inside the package's step-path functions (one timed callback run per path):\n\n"
        text += "\n".join(rows) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "overhead.md").write_text(text)


if __name__ == "__main__":
    main()
