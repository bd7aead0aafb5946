"""What the frontier tasks' configs (``experiments/configs/frontier/``) cannot say in YAML: each task's data
split as a DataModule, CIFAR's per-seed augmentation stream, the channels-last CNN, and MiniLM's top layers
over the cached bottom. With these, a task config trained by ``lightning-ted frontier`` is the plain-Lightning
run the benchmark defines (``tests/experiments/test_frontier_configs.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
import yaml
from compare import accuracy
from frontier_tasks import _DATA, QUICK, SST2_FROZEN, TASKS, TED_VARIANTS, TaskSpec, _CachedCIFAR, task_data
from minilm_top import MiniLMTop
from torch.utils.data import DataLoader

from lightning_ted.frontier.config import TaskConfig, parse_config
from lightning_ted.zoo.data import CIFAR10Data
from lightning_ted.zoo.models import CifarCNN


def _spec(task: str, quick: bool, written_for: str | None = None) -> TaskSpec:
    """The task's spec; ``written_for``: the spec fingerprint the config was written with (``frontier.py``
    writes it), refused when the task's settings in ``frontier_tasks.py`` changed since."""
    spec = (QUICK if quick else TASKS)[task]
    if written_for is not None and written_for != spec.fingerprint():
        raise ValueError(
            f"this config was written for task {task!r} with settings {written_for}, but frontier_tasks.py now gives "
            f"{spec.fingerprint()} (its sizes, batch, noise or data changed): rerun experiments/frontier.py, which "
            "rewrites the config, so its runs are not cached under the old settings"
        )
    return spec


class TaskData(L.LightningDataModule):
    """A task's (train, val, test) tensors, its batch size and a shuffled loader; ``spec``: the settings'
    fingerprint the config was written for (checked, and part of the config, so a change is a new config)."""

    def __init__(self, task: str, quick: bool = False, spec: str | None = None) -> None:
        super().__init__()
        self.spec = _spec(task, quick, spec)

    def setup(self, stage: str) -> None:
        self.train, self.val, self.test = task_data(self.spec)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.spec.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=1000)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=1000)


class CifarTaskData(CIFAR10Data):
    """A CIFAR task's uint8 split, augmented per batch from ``seed + 10000`` unless the task is
    ``cifar10_noaug``; eval batches normalised as usual. ``seed`` defaults to the run's ``seed_everything``
    (LightningCLI seeds before it builds the data), so each paired seed has its own augmentation stream."""

    def __init__(self, task: str, seed: int | None = None, quick: bool = False, spec: str | None = None) -> None:
        spec = _spec(task, quick, spec)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        super().__init__(batch_size=spec.batch_size, aug_seed=seed + 10_000, augment=spec.data != "cifar10_noaug")
        self.spec = spec

    def setup(self, stage: str) -> None:
        self.train = task_data(self.spec)[0]
        raw = _CachedCIFAR(limit=self.spec.n_train, val_size=self.spec.n_val, test_limit=self.spec.n_test)
        raw.setup("fit")
        self.val, self.test = raw.val, raw.test


class ChannelsLastCifarCNN(CifarCNN):
    """:class:`CifarCNN` in channels-last memory format, as the benchmark trains it."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (8, 16, 32, 64)) -> None:
        super().__init__(num_classes, widths=widths)
        self.to(memory_format=torch.channels_last)


class MiniLMTopNet(MiniLMTop):
    """all-MiniLM-L6-v2's layers above the cached, frozen bottom ``frozen`` and a linear head."""

    def __init__(self, frozen: int = SST2_FROZEN) -> None:
        from lightning_ted.zoo.nlu import load_encoder

        super().__init__(load_encoder()[0], frozen)


CONFIGS = Path(__file__).resolve().parent / "configs" / "frontier"


def task_config_dict(spec: TaskSpec) -> dict:
    """The task's config (``configs/frontier/<task>.yaml``) at the spec's epochs, learning rate and widths;
    a spec that is not the task's own (``frontier_tasks.QUICK``) reads the test sizes (``quick: true``)."""
    cfg = yaml.safe_load((CONFIGS / f"{spec.name}.yaml").read_text())
    cfg["trainer"]["max_epochs"] = spec.epochs
    cfg["model"]["init_args"]["lr"] = spec.lr
    if spec.width:
        cfg["model"]["init_args"]["net"]["init_args"]["widths"] = list(spec.width)
    inner = cfg["data"]["init_args"]["datamodule"]["init_args"]
    if spec != TASKS.get(spec.name):
        inner["quick"] = True
    inner["spec"] = spec.fingerprint()  # the data settings the YAML cannot say: a change makes a new config
    return cfg


def task_config(spec: TaskSpec, cfg: dict | None = None) -> TaskConfig:
    """The frontier command's view of ``cfg`` (default: the task's own config, :func:`task_config_dict`)."""
    return parse_config(cfg or task_config_dict(spec), str(CONFIGS / f"{spec.name}.yaml"), "val_acc", "max")


def method_entry(method: str) -> dict | None:
    """The config entry of a named TED variant (``frontier_tasks.TED_VARIANTS``); ``None`` for a base method."""
    if method not in TED_VARIANTS:
        return None
    return {"class_path": "lightning_ted.research.TEDVariant", "init_args": dict(TED_VARIANTS[method])}


def flipped_share(flipped: torch.Tensor, pruned_passes: torch.Tensor) -> float:
    """Share of the pruned sample-passes that fell on flipped labels (the flipped share of the data if uniform)."""
    total = int(pruned_passes.sum())
    return float(pruned_passes[flipped].sum()) / total if total else float("nan")


def measure(trainer, model, dm) -> dict:
    """The benchmark's measures of a trained run: test and validation accuracy (%) on the task's tensors, and
    for flipped labels the share of pruned sample-passes that fell on them (pruned runs only)."""
    spec = dm.inner.spec
    _, val, test = task_data(spec)
    out = {"test_acc": accuracy(model.net, test), "val_acc": accuracy(model.net, val)}
    flipped = _DATA.get(spec.name + "/flipped")
    if flipped is not None and dm.method.name != "full":
        out["flipped_share"] = flipped_share(flipped, trainer.max_epochs - dm.state.seen)
    return out
