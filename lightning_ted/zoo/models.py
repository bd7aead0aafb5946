"""Ready-made models for the shipped tasks, usable from Python and from LightningCLI YAML.

``Classifier`` is a plain ``LightningModule`` whose ``training_step`` returns per-sample losses through
:func:`pruned_loss`, so it works with every pruning method; ``net`` is any ``nn.Module`` (a YAML
``class_path``). The nets end in an ``nn.Linear`` head, which is where TED reads its Taylor terms.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_ted.adapters.loss import pruned_loss

OPTIMIZERS = ("sgd", "adamw")


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer classifier for 28x28 images; ``fc2`` is the head TED reads."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3)
        self.conv2 = nn.Conv2d(width, 2 * width, 3)
        self.fc1 = nn.Linear(2 * width * 5 * 5, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias), batch norm, ReLU: the unit every CIFAR network here is built from."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """``x + f(x)`` with two ``conv_bn`` units of ``c`` channels (ResNet-9's residual stage)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """The fast ResNet-9 of the DAWNBench CIFAR-10 entries (about 93% in 10-20 epochs on a GPU): prep,
    (conv, pool, residual), (conv, pool), (conv, pool, residual), global max-pool and a linear ``head``
    (no bias, output scaled by 0.125, as those entries do)."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), num_classes: int = 10) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.features = nn.Sequential(
            conv_bn(3, w0),
            conv_bn(w0, w1), nn.MaxPool2d(2), Residual(w1),
            conv_bn(w1, w2), nn.MaxPool2d(2),
            conv_bn(w2, w3), nn.MaxPool2d(2), Residual(w3),
        )  # fmt: skip
        self.head = nn.Linear(w3, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_max_pool2d(self.features(x), 1).flatten(1)) * 0.125


class CifarCNN(nn.Module):
    """Small plain CNN for 32x32 RGB images, sized for CPU grids; ``head`` is the head TED reads.

    A 3x3 conv-BN-ReLU stem (``stem_stride`` 2 halves the resolution and the cost), then for each further
    width a conv-BN-ReLU and a 2x2 max-pool, global average pooling and a linear head. The default
    (8, 16, 32, 64) with stride-2 stem has 25k parameters and trains at ~6k images/s on one CPU thread.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (8, 16, 32, 64), stem_stride: int = 2) -> None:
        super().__init__()
        layers = [conv_bn(3, widths[0], stem_stride)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [conv_bn(cin, cout), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class TextCNN(nn.Module):
    """Embedding + 1-D convolutions of widths 3/4/5 + max-pool (Kim 2014), from scratch; ``head`` is the head."""

    def __init__(self, vocab_size: int, num_classes: int = 2, dim: int = 64, channels: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(dim, channels, k) for k in (3, 4, 5))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(3 * channels, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not ids.is_cuda and int(ids.max()) >= self.embed.num_embeddings:  # no device sync on GPU
            raise ValueError(
                f"token id {int(ids.max())} is outside TextCNN(vocab_size={self.embed.num_embeddings}); set "
                "vocab_size to the datamodule's vocab_size (SST2Data prints it at setup)."
            )
        e = self.embed(ids).transpose(1, 2)
        pooled = [F.relu(conv(e)).amax(dim=2) for conv in self.convs]
        return self.head(self.drop(torch.cat(pooled, dim=1)))


class Classifier(L.LightningModule):
    """Cross-entropy classifier over ``net`` with per-sample losses for pruning and cosine LR per epoch.

    Args:
        net: the network (logits out); e.g. :class:`SmallCNN` or :class:`TextCNN`.
        num_classes: classes, for the accuracy metrics.
        lr, weight_decay: optimiser settings; ``optimizer`` is ``"sgd"`` (Nesterov momentum 0.9) or ``"adamw"``.
        max_epochs: length of the cosine decay; the CLI links it to ``trainer.max_epochs``. ``None`` keeps
            the learning rate constant.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        lr: float = 0.05,
        optimizer: str = "sgd",
        weight_decay: float = 5e-4,
        max_epochs: int | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*inputs)

    def per_sample_loss(self, batch) -> torch.Tensor:
        """Cross-entropy of every sample (``reduction="none"``); TED's forward-only pass calls it too.

        A batch is ``(*inputs, labels)``: ``(x, y)`` for images, ``(ids, mask, y)`` for an encoder.
        """
        *inputs, y = batch
        return F.cross_entropy(self(*inputs), y, reduction="none")

    def training_step(self, batch, batch_idx):
        return pruned_loss(self, self.per_sample_loss(batch))

    def validation_step(self, batch, batch_idx) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx) -> None:
        self._evaluate(batch, "test", self.test_acc)

    def _evaluate(self, batch, split: str, metric: MulticlassAccuracy) -> None:
        *inputs, y = batch
        logits = self(*inputs)
        metric(logits, y)
        self.log(f"{split}_loss", F.cross_entropy(logits, y))
        self.log(f"{split}_acc", metric, prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "adamw":
            opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.SGD(
                self.parameters(), lr=hp.lr, momentum=0.9, nesterov=True, weight_decay=hp.weight_decay
            )
        if hp.max_epochs is None:
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
