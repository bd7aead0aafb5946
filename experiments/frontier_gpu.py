"""The frontier benchmark on one GPU: CIFAR-10 (all 45k training images), a ResNet-9 in bf16, data on the device.

    PYTHONPATH=experiments python experiments/frontier_gpu.py           # budget points + infobatch/seta/ted at 50/70%
    PYTHONPATH=experiments python experiments/frontier_gpu.py --tiny    # CPU smoke test: 160 images, 7 epochs

The task is a config like the CPU tasks' (``configs/frontier/cifar10_gpu.yaml``) and runs the same way:
``frontier.py`` writes one config per method and ``lightning-ted frontier`` trains them into
``results/frontier_cifar10_gpu/runs.jsonl``, whose runs the tables read (``results/frontier_cifar10_gpu.md`` /
``.csv`` / ``.png``). The training split lives on the GPU as uint8 (``device_resident``: 150 MB); each batch
is gathered there, cropped and flipped there (CIFAR10Data's batched augmentation) and normalised, so the host
only hands over indices. The net is the well-known ResNet-9 layout (prep conv, three stages of conv-BN-ReLU +
max-pool with a residual pair after the first and last, global max-pool, a scaled linear head) in bf16
autocast, SGD (Nesterov) with label smoothing and a linear warm-up / linear decay spanning each run's own
epochs, set per batch from the epoch progress (so a pruned run or a budget point decays fully). Sized for < 8
minutes on one H200 (2 seeds; budget points 1.5/1/0.7/0.5/0.3 of E = 10 epochs; infobatch, seta, ted at 50%
and 70%).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import frontier
import lightning as L
import torch
import torch.nn.functional as F
from frontier_tasks import REGENERATE
from torch import nn
from torch.utils.data import TensorDataset

from lightning_ted import pruned_loss
from lightning_ted.zoo.data import normalize_images
from lightning_ted.zoo.datasets import CIFAR10_MEAN, CIFAR10_STD
from lightning_ted.zoo.models import ResNet9

METHODS_GPU = ["infobatch", "seta", "ted"]
TARGETS_GPU = (0.5, 0.7)


class ChannelsLastResNet9(ResNet9):
    """:class:`ResNet9` in channels-last memory format (faster convolutions in bf16 on a GPU)."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), num_classes: int = 10) -> None:
        super().__init__(tuple(widths), num_classes)
        self.to(memory_format=torch.channels_last)


class GpuModule(L.LightningModule):
    """Label-smoothed per-sample cross-entropy; SGD, LR warmed up over the first 20% of the run, then to 0."""

    def __init__(self, net: nn.Module, lr: float = 0.2, weight_decay: float = 5e-4) -> None:
        super().__init__()
        self.net, self.lr, self.weight_decay = net, lr, weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def per_sample_loss(self, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x).float(), y, reduction="none", label_smoothing=0.2)

    def training_step(self, batch, batch_idx):
        return pruned_loss(self, self.per_sample_loss(batch))

    def validation_step(self, batch, batch_idx) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean(), on_epoch=True, batch_size=len(y))

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.ndim > 1]
        other = [p for p in self.parameters() if p.ndim <= 1]
        opt = torch.optim.SGD(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": other, "weight_decay": 0.0}],
            lr=self.lr, momentum=0.9, nesterov=True,
        )  # fmt: skip
        return opt

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """LR from the run's progress in epochs (InfoBatch and SeTa keep a score-dependent number of samples,
        so the step count is unknown up front): linear warm-up over the first 20%, then linear decay to 0."""
        trainer = self.trainer
        progress = (trainer.current_epoch + batch_idx / max(1, trainer.num_training_batches)) / trainer.max_epochs
        factor = progress / 0.2 if progress < 0.2 else (1.0 - progress) / 0.8
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = self.lr * max(factor, 0.0) + 1e-6


@torch.no_grad()
def accuracy(net: nn.Module, data: TensorDataset, device: torch.device, batch: int = 2000) -> float:
    """Accuracy (%) in bf16 autocast on ``device`` of uint8 images, each batch moved there and normalised."""
    net.to(device).eval()
    x, y = data.tensors
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        for i in range(0, len(y), batch):
            xb = normalize_images(x[i : i + batch].to(device), CIFAR10_MEAN, CIFAR10_STD)
            correct += (
                net(xb.contiguous(memory_format=torch.channels_last)).argmax(1) == y[i : i + batch].to(device)
            ).sum()
    return 100.0 * int(correct) / len(y)  # one sync per evaluation


def measure(trainer: L.Trainer, model: GpuModule, dm) -> dict:
    """Test and validation accuracy (%) of a trained run, on its training device (``--measure``)."""
    inner, device = dm.inner, trainer.strategy.root_device
    return {"test_acc": accuracy(model.net, inner.test, device), "val_acc": accuracy(model.net, inner.val, device)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test at a tiny size")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default experiments/results)")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device here; run with --tiny for the CPU smoke test")
    if not args.tiny:
        torch.backends.cudnn.benchmark = True
    targets = [str(t) for t in TARGETS_GPU]
    seeds = ["--seeds", str(args.seeds), "--main-seeds", str(args.seeds)]
    common = ["--tasks", "cifar10_gpu", "--methods", *METHODS_GPU, "--targets", *targets, *seeds, "--workers", "1"]
    common += ["--accelerator", "cpu" if args.tiny else "gpu", "--measure", "frontier_gpu.measure"]
    if args.tiny:
        REGENERATE["cifar10_gpu"] = "PYTHONPATH=experiments python experiments/frontier_gpu.py --tiny"
    frontier.main(common + (["--quick"] if args.tiny else []) + (["--out", str(args.out)] if args.out else []))


if __name__ == "__main__":
    main()
