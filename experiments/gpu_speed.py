"""GPU speed benchmark (issue 16): overhead at ratio 0 and realized vs ideal speedup of TED, on CIFAR-10.

    python experiments/gpu_speed.py                 # one H200: under 8 minutes
    python experiments/gpu_speed.py --tiny          # CPU smoke run: 512 images, tiny widths, 2 epochs

For each network (a CIFAR ResNet-18 and the fast ResNet-9), bf16-mixed, channels_last, batch 512, and each
data path (``device``: the training set lives on the accelerator and batches are gathered there;
``standard``: a CPU ``TensorDataset`` through the DataLoader with pinned memory), it trains in one process:
plain Lightning (mean loss, no callback, a loader that also gathers whole batches), the callback at ratio 0
(``full``: every sample every epoch, Taylor terms computed), and TED pruning 30/50/70% of the samples per
epoch (``ConstantSchedule``, epoch 0 unpruned). Epoch 0 is warm-up; an epoch's time is the interval between
consecutive epoch ends (loader rebuild, selection, steps and the score update all included; the device is
synchronized at each). Overhead = full / plain - 1; realized speedup = full epoch time / TED epoch time,
against the ideal ``N / kept`` of the same epochs. Augmentation (random flips) runs on the device inside
``training_step``, identical on both paths. Writes ``experiments/results/gpu_speed.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from lightning_ted import TED, ConstantSchedule, DynamicPruningDataModule, TEDPruningCallback, pruned_loss
from lightning_ted.zoo.models import ResNet9, conv_bn

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "CIFAR-10"
MEAN, STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)


def load_cifar(root: Path, limit: int | None) -> TensorDataset:
    """The CIFAR-10 training split as uint8 NCHW images and int64 labels (a class-balanced stride if limited)."""
    with np.load(root / "cifar10_train.npz") as f:
        x, y = f["x"], f["y"]
    if limit is not None:  # the file is ordered by class: a stride keeps every class
        keep = np.linspace(0, len(y) - 1, limit).astype(np.int64)
        x, y = x[keep], y[keep]
    return TensorDataset(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y).long())


class Block(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a (projected) identity shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(c_in, c_out, stride), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        )
        self.skip = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def resnet18(width: int = 64, num_classes: int = 10) -> nn.Module:
    """ResNet-18 for 32x32 inputs: 3x3 stem without max-pool, four stages of two basic blocks."""
    widths, layers, c = [width, 2 * width, 4 * width, 8 * width], [conv_bn(3, width)], width
    for i, w in enumerate(widths):
        layers += [Block(c, w, 1 if i == 0 else 2), Block(w, w, 1)]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))


def resnet9(width: int = 64, num_classes: int = 10) -> nn.Module:
    """The fast ResNet-9 (``lightning_ted.zoo.models.ResNet9``) at widths ``width`` x (1, 2, 4, 8)."""
    return ResNet9((width, 2 * width, 4 * width, 8 * width), num_classes)


NETS = {"resnet18": resnet18, "resnet9": resnet9}


class Net(L.LightningModule):
    """Normalizes and flips uint8 batches on the device; ``pruned`` returns ``pruned_loss`` for the callback."""

    def __init__(self, net: str, width: int, pruned: bool) -> None:
        super().__init__()
        self.model = NETS[net](width).to(memory_format=torch.channels_last)
        self.pruned = pruned
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = ((x.float() - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
        x = torch.where(flip, x.flip(3), x)
        losses = F.cross_entropy(self.model(x), y, reduction="none")
        return pruned_loss(self, losses) if self.pruned else losses.mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


class DeviceBatches:
    """Plain Lightning's device-resident loader: one ``randperm`` on the device per epoch, batches by slicing."""

    def __init__(self, data: TensorDataset, batch_size: int) -> None:
        self.tensors, self.batch_size = data.tensors, batch_size

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.tensors[0]), device=self.tensors[0].device)
        for idx in order.split(self.batch_size):
            yield [t[idx] for t in self.tensors]


class EpochClock(Callback):
    """Wall time at each epoch end (device synchronized), the steps of each epoch and the kept count."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.steps: list[int] = []
        self.kept: list[int] = []
        self._steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._steps += 1

    def on_train_epoch_end(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        self.steps.append(self._steps)
        self._steps = 0
        dm = trainer.datamodule
        self.kept.append(len(dm.current_selection) if dm is not None else -1)

    def timed(self) -> tuple[float, float, float]:
        """(median epoch seconds, steps per second, samples kept) over the epochs after the first."""
        durations = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
        steps = sum(self.steps[1:])
        return statistics.median(durations), steps / sum(durations), statistics.mean(self.kept[1:])


def run(net: str, arm: str, path: str, data: TensorDataset, args: argparse.Namespace) -> tuple[float, float, float]:
    """Train one arm (``plain``, ``full`` or a saved fraction such as ``0.5``) on one data path; its clock."""
    L.seed_everything(0, verbose=False)
    cuda = torch.cuda.is_available()
    if path == "device":
        data = TensorDataset(*(t.cuda() for t in data.tensors)) if cuda else data
    model = Net(net, args.width, pruned=arm != "plain")
    clock = EpochClock()
    callbacks = [clock] if arm == "plain" else [TEDPruningCallback(progress_bar=False), clock]
    trainer = L.Trainer(
        max_epochs=args.epochs, accelerator="auto", devices=1, precision="bf16-mixed", callbacks=callbacks,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, benchmark=cuda,
    )  # fmt: skip
    if arm == "plain":
        if path == "device":
            loader = DeviceBatches(data, args.batch_size)
        else:
            sampler = BatchSampler(RandomSampler(data), args.batch_size, drop_last=False)
            loader = DataLoader(data, batch_size=None, sampler=sampler, pin_memory=cuda, num_workers=args.workers)
        trainer.fit(model, train_dataloaders=loader)
    else:
        ratio = 0.0 if arm == "full" else float(arm)
        dm = DynamicPruningDataModule(
            data, method=TED(), schedule=ConstantSchedule(ratio, warmup_epochs=1, anneal=0.0),
            batch_size=args.batch_size, pin_memory=cuda and path == "standard", num_workers=args.workers or None,
            device_resident=path == "device", seed=0,
        )  # fmt: skip
        trainer.fit(model, datamodule=dm)
    return clock.timed()


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: 512 images, width 8, batch 64, 2 epochs")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--paths", nargs="+", default=["device", "standard"], choices=["device", "standard"])
    parser.add_argument("--saved", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="train on this many images (default: all 50k)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the standard path")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_speed.md")
    args = parser.parse_args(argv)
    if args.tiny:
        args.limit, args.width, args.batch_size, args.epochs = args.limit or 512, 8, 64, 2
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    data = load_cifar(args.data, args.limit)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run, not a GPU figure)"
    started = time.perf_counter()
    lines = [
        "| network | data path | arm | epoch s | steps/s | kept | overhead vs plain | speedup vs full | ideal "
        "| realized / ideal |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for net in args.nets:
        for path in args.paths:
            plain = run(net, "plain", path, data, args)
            full = run(net, "full", path, data, args)
            n = len(data)
            lines.append(f"| {net} | {path} | plain | {plain[0]:.2f} | {plain[1]:.1f} | {n} | | | | |")
            lines.append(
                f"| {net} | {path} | full (ratio 0) | {full[0]:.2f} | {full[1]:.1f} | {full[2]:.0f} "
                f"| {100 * (full[0] / plain[0] - 1):+.1f}% | | | |"
            )
            print("\n".join(lines[-2:]), flush=True)
            for saved in args.saved:
                secs, rate, kept = run(net, str(saved), path, data, args)
                speedup, ideal = full[0] / secs, n / kept
                lines.append(
                    f"| {net} | {path} | TED {100 * saved:.0f}% saved | {secs:.2f} | {rate:.1f} | {kept:.0f} "
                    f"| | {speedup:.2f}x | {ideal:.2f}x | {speedup / ideal:.2f} |"
                )
                print(lines[-1], flush=True)
    header = (
        f"CIFAR-10 ({len(data)} training images), batch {args.batch_size}, width {args.width}, bf16-mixed, "
        f"channels_last, {args.epochs - 1} timed epochs after 1 warm-up; {device}, torch {torch.__version__}; "
        f"{time.perf_counter() - started:.0f} s in all. Command: python experiments/gpu_speed.py "
        f"{' '.join(argv) if argv else ''}\n\n"
    )
    text = header + "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return text


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
