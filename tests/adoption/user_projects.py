"""Three users' projects as they were before pruning, with the README's changed lines marked ``# lightning-ted``.

- the lightning-hydra-template's MNIST experiment (``lightning``, torchvision MNIST joined into one
  ``ConcatDataset`` and ``random_split``, a ``MeanMetric`` for the loss, a Hydra-instantiated net and optimizer);
- Lightning's GLUE text-transformers tutorial (``pytorch_lightning``, a Hugging Face sequence classifier, a
  DataModule whose items are dicts, a linear warm-up schedule sized in steps);
- a plain LightningCLI project whose DataModule calls ``self.save_hyperparameters()``.

The public projects are not reachable offline; these follow their shape (constructor arguments, hooks,
what each hook reads) with small sizes so a test fits in seconds. Only the marked lines differ from the
originals' shape.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset, random_split
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification.accuracy import Accuracy

import lightning_ted
from lightning_ted import pruned_loss

try:
    import pytorch_lightning as pl
except ImportError:  # the GLUE-shaped project needs the standalone package (the dev extra installs it)
    pl = None


# ---------------------------------------------------------------------- 1. the Hydra template's MNIST experiment
class SimpleDenseNet(nn.Module):
    """The template's MLP: three Linear-BatchNorm-ReLU blocks and an output layer."""

    def __init__(self, input_size: int = 784, lin1_size: int = 64, lin2_size: int = 64, output_size: int = 10):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(input_size, lin1_size),
            nn.BatchNorm1d(lin1_size),
            nn.ReLU(),
            nn.Linear(lin1_size, lin2_size),
            nn.BatchNorm1d(lin2_size),
            nn.ReLU(),
            nn.Linear(lin2_size, output_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.flatten(1))


class MNISTDataModule(L.LightningDataModule):
    """The template's MNIST DataModule: train and test sets joined, then split three ways."""

    def __init__(
        self,
        data_dir: str = "data/",
        train_val_test_split: tuple[int, int, int] = (55_000, 5_000, 10_000),
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        from torchvision import transforms

        self.transforms = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        self.data_train: Dataset | None = None
        self.batch_size_per_device = batch_size

    @property
    def num_classes(self) -> int:
        return 10

    def setup(self, stage: str | None = None) -> None:
        from torchvision.datasets import MNIST

        if self.trainer is not None:
            self.batch_size_per_device = self.hparams.batch_size // self.trainer.world_size
        if self.data_train is None:
            train = MNIST(self.hparams.data_dir, train=True, transform=self.transforms)
            test = MNIST(self.hparams.data_dir, train=False, transform=self.transforms)
            self.data_train, self.data_val, self.data_test = random_split(
                ConcatDataset([train, test]), self.hparams.train_val_test_split, torch.Generator().manual_seed(42)
            )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data_train, batch_size=self.batch_size_per_device, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data_val, batch_size=self.batch_size_per_device, shuffle=False)


class MNISTLitModule(L.LightningModule):
    """The template's LightningModule; the pruning change is the two marked lines."""

    def __init__(self, net: nn.Module, optimizer: Any, scheduler: Any = None, compile: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net"])
        self.net = net
        self.criterion = nn.CrossEntropyLoss(reduction="none")  # lightning-ted: one loss per sample
        self.train_acc = Accuracy(task="multiclass", num_classes=10)
        self.val_acc = Accuracy(task="multiclass", num_classes=10)
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch):
        x, y = batch
        logits = self.forward(x)
        return self.criterion(logits, y), logits.argmax(dim=1), y

    def training_step(self, batch, batch_idx):
        loss, preds, targets = self.model_step(batch)
        self.train_loss(loss)  # a MeanMetric takes the per-sample vector
        self.train_acc(preds, targets)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return pruned_loss(self, loss)  # lightning-ted: weight the kept samples, hand the losses over

    def validation_step(self, batch, batch_idx):
        loss, preds, targets = self.model_step(batch)
        self.val_loss(loss)
        self.val_acc(preds, targets)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        return {"optimizer": self.hparams.optimizer(params=self.trainer.model.parameters())}


# ---------------------------------------------------------------------- 2. the GLUE tutorial's shape
class ColumnDataset(Dataset):
    """What ``datasets.Dataset.set_format("torch")`` serves: a dict per row, a whole column by name."""

    def __init__(self, **columns: torch.Tensor) -> None:
        self.columns = columns
        self.column_names = list(columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.columns[key]
        return {name: column[key] for name, column in self.columns.items()}


def glue_classes(package: Any) -> tuple[type, type]:
    """The tutorial's ``GLUEDataModule`` and ``GLUETransformer`` written against ``package``."""

    class GLUEDataModule(package.LightningDataModule):
        def __init__(self, model_name_or_path: str, max_seq_length: int = 32, train_batch_size: int = 32,
                     eval_batch_size: int = 64, limit: int = 192) -> None:  # fmt: skip
            super().__init__()
            self.save_hyperparameters()

        def setup(self, stage: str) -> None:
            from transformers import AutoTokenizer

            from lightning_ted.zoo.nlu import tokenize_sst2

            tokenizer = AutoTokenizer.from_pretrained(self.hparams.model_name_or_path)
            self.dataset = {}
            for split, name in (("train", "train"), ("validation", "dev")):
                tokens = tokenize_sst2(tokenizer, name, self.hparams.max_seq_length, self.hparams.limit)
                ids, mask, labels = tokens.tensors
                self.dataset[split] = ColumnDataset(input_ids=ids, attention_mask=mask, labels=labels)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(self.dataset["train"], batch_size=self.hparams.train_batch_size, shuffle=True)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(self.dataset["validation"], batch_size=self.hparams.eval_batch_size)

    class GLUETransformer(package.LightningModule):
        def __init__(self, model_name_or_path: str, num_labels: int = 2, learning_rate: float = 1e-3,
                     warmup_steps: int = 2, weight_decay: float = 0.0) -> None:  # fmt: skip
            super().__init__()
            self.save_hyperparameters()
            from transformers import AutoConfig, AutoModelForSequenceClassification

            # the tutorial loads pretrained weights; a one-layer model of the same family keeps the test fast
            config = AutoConfig.from_pretrained(model_name_or_path, num_labels=num_labels, num_hidden_layers=1)
            config.update({"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64})
            self.model = AutoModelForSequenceClassification.from_config(config)
            self.seen_lrs: list[float] = []

        def forward(self, **inputs):
            return self.model(**inputs)

        def training_step(self, batch, batch_idx):
            outputs = self(**batch)  # outputs.loss is already averaged over the batch: use the logits
            losses = F.cross_entropy(outputs.logits, batch["labels"], reduction="none")  # lightning-ted
            out = pruned_loss(self, losses)  # lightning-ted
            self.log("train_loss", out["loss"], prog_bar=True)  # lightning-ted: log the weighted mean
            self.seen_lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
            return out  # lightning-ted

        def validation_step(self, batch, batch_idx):
            outputs = self(**batch)
            self.log("val_loss", outputs.loss, prog_bar=True)

        def configure_optimizers(self):
            from transformers import get_linear_schedule_with_warmup

            optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.hparams.learning_rate)
            scheduler = get_linear_schedule_with_warmup(
                optimizer,
                num_warmup_steps=self.hparams.warmup_steps,
                num_training_steps=lightning_ted.total_optimizer_steps(self.trainer),  # lightning-ted
            )
            return [optimizer], [{"scheduler": scheduler, "interval": "step", "frequency": 1}]

    return GLUEDataModule, GLUETransformer


# ---------------------------------------------------------------------- 3. a LightningCLI project
class SavedTensorsData(L.LightningDataModule):
    """Reads ``data_dir/train.pt`` (features, labels); every setting comes from ``self.hparams``."""

    def __init__(self, data_dir: str = "data", batch_size: int = 32, shuffle: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        x, y = torch.load(f"{self.hparams.data_dir}/train.pt")
        self.train_set = TensorDataset(x, y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=self.hparams.shuffle)


if pl is not None:

    class PLSavedTensorsData(pl.LightningDataModule):
        """The same DataModule written against ``pytorch_lightning`` (for ``pytorch_lightning.cli.LightningCLI``)."""

        def __init__(self, data_dir: str = "data", batch_size: int = 32, shuffle: bool = True) -> None:
            super().__init__()
            self.save_hyperparameters()

        setup = SavedTensorsData.setup
        train_dataloader = SavedTensorsData.train_dataloader


def linear_classifier_class(package: Any) -> type:
    """The CLI project's model written against ``package`` (``lightning`` or ``pytorch_lightning``)."""

    class LinearClassifier(package.LightningModule):
        def __init__(self, features: int = 8, classes: int = 3, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.fc = nn.Linear(features, classes)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return pruned_loss(self, F.cross_entropy(self.fc(x), y, reduction="none"))  # lightning-ted

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return LinearClassifier


LinearClassifier = linear_classifier_class(L)


def write_tensors(data_dir: Any, n: int = 192, features: int = 8, classes: int = 3) -> None:
    """The CLI project's data file: a separable classification problem, ``n`` samples."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = torch.randn(n, features, generator=gen) + 2.0 * F.one_hot(y, features).float()
    torch.save((x, y), f"{data_dir}/train.pt")
