"""Issue 22, items 6 and 7: the lightning-hydra-template's MNIST experiment, pruned with the README's Hydra
recipe (a defaults list puts the template's own data config under ``datamodule``), so every template key
can still be overridden without ``+``; per-class kept fractions read through the template's
``Subset`` of a ``ConcatDataset``."""

from __future__ import annotations

import pytest
import torch
from conftest import requires_mnist

hydra = pytest.importorskip("hydra")
import lightning as L  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import ConfigCompositionException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from lightning_ted.zoo.datasets import default_data_root  # noqa: E402

CONFIGS = {
    "train.yaml": """
defaults:
  - _self_
  - data: mnist
  - model: mnist
paths:
  data_dir: data/
trainer:
  _target_: lightning.pytorch.Trainer
  max_epochs: 3
  accelerator: cpu
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
""",
    # the template's data config, unchanged
    "data/mnist.yaml": """
_target_: user_projects.MNISTDataModule
data_dir: ${paths.data_dir}
batch_size: 128
train_val_test_split: [55_000, 5_000, 10_000]
num_workers: 0
pin_memory: False
""",
    # the README's recipe: the only new file
    "data/mnist_pruned.yaml": """
defaults:
  - mnist@datamodule
  - _self_
_target_: lightning_ted.DynamicPruningDataModule
method: {_target_: lightning_ted.TED}
schedule: {_target_: lightning_ted.RollerCoasterSchedule, ratio: 0.5}
""",
    # the README's earlier recipe: the wrapped module's keys written inline (some of them)
    "data/mnist_pruned_inline.yaml": """
_target_: lightning_ted.DynamicPruningDataModule
datamodule:
  _target_: user_projects.MNISTDataModule
  data_dir: ${paths.data_dir}
  batch_size: 128
method: {_target_: lightning_ted.TED}
""",
    "model/mnist.yaml": """
_target_: user_projects.MNISTLitModule
optimizer: {_target_: torch.optim.Adam, _partial_: true, lr: 0.002}
net: {_target_: user_projects.SimpleDenseNet, input_size: 784, lin1_size: 64, lin2_size: 64, output_size: 10}
""",
}


@pytest.fixture
def config_dir(tmp_path):
    for name, text in CONFIGS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return str(tmp_path)


def _compose(config_dir, overrides):
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@requires_mnist
def test_user_prunes_the_template_mnist_experiment_and_overrides_its_keys(config_dir):
    """``data=mnist_pruned`` plus template keys overridden one level down, without ``+``; the run trains
    pruned, the wrapped module holds the overrides, and labels come through Subset(ConcatDataset)."""
    cfg = _compose(config_dir, [
        "data=mnist_pruned",
        "data.datamodule.train_val_test_split=[512,256,69232]",
        "data.datamodule.batch_size=64",
        f"paths.data_dir={default_data_root()}",
    ])  # fmt: skip
    L.seed_everything(0, verbose=False)
    dm, model = instantiate(cfg.data), instantiate(cfg.model)
    trainer = instantiate(cfg.trainer)
    trainer.fit(model=model, datamodule=dm)
    assert list(dm.inner.hparams.train_val_test_split) == [512, 256, 69232]
    assert dm.batch_size == 64 and dm.inner.hparams.pin_memory is False
    kept = dm.kept_history.tolist()
    assert kept[0] == 512 and kept[1] < 512
    subset = dm.inner.data_train
    joined = subset.dataset
    truth = torch.cat([part.targets for part in joined.datasets])[torch.as_tensor(subset.indices)]
    assert torch.equal(dm.train_labels(), truth)
    assert "prune/kept_fraction/class_0" in trainer.callback_metrics


def test_the_inline_recipe_needed_a_plus_that_the_defaults_list_does_not(config_dir):
    """Why the recipe changed: with the wrapped keys written inline, a template key left out of them cannot
    be overridden without ``+`` (Hydra's struct mode); the defaults-list recipe composes every template key."""
    key = "data.datamodule.train_val_test_split=[512,256,69232]"
    with pytest.raises(ConfigCompositionException):
        _compose(config_dir, ["data=mnist_pruned_inline", key])
    cfg = _compose(config_dir, ["data=mnist_pruned", key])
    assert cfg.data.datamodule.num_workers == 0 and cfg.data.datamodule._target_ == "user_projects.MNISTDataModule"
