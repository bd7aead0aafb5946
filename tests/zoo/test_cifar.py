"""CIFAR-10: the offline loader's split sizes, and the batched uint8 augmentation against a per-image crop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_trainer

from lightning_ted import DynamicPruningDataModule
from lightning_ted.zoo.data import CIFAR10Data, crop_flip, draw_crop_flip, normalize_images, random_crop_flip
from lightning_ted.zoo.datasets import CIFAR10_MEAN, default_data_root, load_cifar10
from lightning_ted.zoo.models import CifarCNN, Classifier

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

requires_cifar = pytest.mark.skipif(
    not (default_data_root() / "CIFAR-10" / "cifar10_test.npz").exists(), reason="shared/data/CIFAR-10 is not present"
)


def _images(b: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_augmentation_keeps_shape_dtype_and_device():
    x = _images()
    out = random_crop_flip(x, 4, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
    assert not torch.equal(out, x)  # 16 random shifts/flips leave some image changed


def test_crop_is_the_shifted_window_of_the_padded_image_and_flip_mirrors_it():
    x = _images(32)
    dy, dx, flip = draw_crop_flip(32, 4, torch.Generator().manual_seed(3))
    flip[:4] = torch.tensor([True, False, True, False])  # both branches surely present
    out = crop_flip(x, dy, dx, flip, pad=4)
    padded = torch.zeros(32, 3, 40, 40, dtype=torch.uint8)
    padded[:, :, 4:36, 4:36] = x
    for i in range(32):  # brute force, one image at a time
        window = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        expected = window.flip(-1) if flip[i] else window
        assert torch.equal(out[i], expected), i


def test_zero_offset_without_flip_is_identity_and_flip_alone_mirrors():
    x = _images(4)
    centre = torch.full((4,), 4)
    assert torch.equal(crop_flip(x, centre, centre, torch.zeros(4, dtype=torch.bool)), x)
    assert torch.equal(crop_flip(x, centre, centre, torch.ones(4, dtype=torch.bool)), x.flip(-1))
    corner = crop_flip(x, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), torch.zeros(4).bool())
    assert (corner[:, :, :4, :] == 0).all() and (corner[:, :, :, :4] == 0).all()  # 4 rows/cols of padding
    assert torch.equal(corner[:, :, 4:, 4:], x[:, :, :28, :28])


def test_augmentation_is_deterministic_under_a_seeded_generator():
    x = _images(64)
    a = random_crop_flip(x, 4, torch.Generator().manual_seed(7))
    b = random_crop_flip(x, 4, torch.Generator().manual_seed(7))
    c = random_crop_flip(x, 4, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_offsets_cover_every_shift_and_both_flips():
    dy, dx, flip = draw_crop_flip(4000, 4, torch.Generator().manual_seed(0))
    assert set(dy.tolist()) == set(range(9)) == set(dx.tolist())
    assert 0.45 < flip.float().mean().item() < 0.55


def test_normalisation_centres_the_channel_mean():
    x = torch.full((2, 3, 4, 4), 0, dtype=torch.uint8)
    x[:] = torch.tensor([round(255 * m) for m in CIFAR10_MEAN], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize_images(x, CIFAR10_MEAN, (0.25, 0.25, 0.25))
    assert out.dtype == torch.float32 and out.abs().max() < 0.01


@requires_cifar
def test_loader_gives_the_official_split_as_uint8_and_can_drop_the_inexact_images():
    test = load_cifar10(train=False)
    x, y = test.tensors
    assert x.shape == (10000, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [1000] * 10
    assert len(load_cifar10(train=False, exact_only=True)) == 10000 - 25


def _fit_and_spy(augment: bool):
    data = CIFAR10Data(limit=256, val_size=128, test_limit=64, batch_size=64, aug_seed=0, augment=augment)
    seen = {"train": [], "val": []}

    class Spy(Classifier):
        def training_step(self, batch, batch_idx):
            seen["train"].append(batch[0])
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            seen["val"].append(batch[0])
            return super().validation_step(batch, batch_idx)

    model = Spy(CifarCNN(widths=(4, 8)), max_epochs=1)
    dm = DynamicPruningDataModule(datamodule=data, method="full", seed=0)
    make_trainer(1, deterministic=False).fit(model, datamodule=dm)
    return data, torch.cat(seen["train"]), torch.cat(seen["val"])


@pytest.mark.slow
@requires_cifar
def test_datamodule_splits_and_augments_only_training_batches_in_a_real_fit():
    data, train, val = _fit_and_spy(augment=True)
    assert (len(data.train), len(data.val), len(data.test)) == (256, 128, 64)
    assert data.train.tensors[0].dtype == torch.uint8
    std = (0.2470, 0.2435, 0.2616)
    assert torch.allclose(val, normalize_images(data.val.tensors[0], CIFAR10_MEAN, std))  # never augmented
    assert train.dtype == torch.float32 and train.shape == (256, 3, 32, 32)
    plain = {round(v, 2) for v in normalize_images(data.train.tensors[0], CIFAR10_MEAN, std).sum((1, 2, 3)).tolist()}
    unchanged = sum(round(v, 2) in plain for v in train.sum((1, 2, 3)).tolist())
    assert unchanged < 256 * 0.5  # a shifted crop brings in zero padding; only (4, 4) offsets keep the pixels
    _, train_plain, _ = _fit_and_spy(augment=False)
    assert all(round(v, 2) in plain for v in train_plain.sum((1, 2, 3)).tolist())


def test_cifar_datamodule_rejects_float_batches():
    data = CIFAR10Data(limit=8)
    with pytest.raises(TypeError, match="uint8"):
        data.on_after_batch_transfer((torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)), 0)


@pytest.mark.slow
@requires_cifar
def test_cifar10_config_fits_through_the_cli(tmp_path):
    from lightning_ted.cli import run_cli

    config = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "cifar10.yaml"
    cli = run_cli(
        [
            "fit",
            f"--config={config}",
            "--trainer.max_epochs=2",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--data.init_args.datamodule.init_args.limit=256",
            "--data.init_args.datamodule.init_args.val_size=128",
            "--data.init_args.datamodule.init_args.test_limit=64",
        ]
    )
    dm = cli.datamodule
    assert isinstance(dm.inner, CIFAR10Data) and cli.trainer.current_epoch == 2
    assert cli.model.hparams.max_epochs == 2 and len(dm.current_selection) < 256  # pruned in epoch 2
