"""Shared fixtures: real MNIST subsets from shared/data, and a Trainer factory for quick CPU runs."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_ted.zoo.datasets import default_data_root, load_image_classification

os.environ.setdefault("WANDB_MODE", "offline")
warnings.filterwarnings("ignore", ".*does not have many workers.*")


def _mnist_available() -> bool:
    return (default_data_root() / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


if os.environ.get("CI") and not _mnist_available():  # in CI a missing data folder must fail, not skip 60 tests
    raise RuntimeError(f"CI run without MNIST under {default_data_root()}: check the shared/ data folder and its path")

requires_mnist = pytest.mark.skipif(not _mnist_available(), reason="shared/data/MNIST is not present")


@pytest.fixture(scope="session")
def mnist_train():
    if not _mnist_available():
        pytest.skip("shared/data/MNIST is not present")
    return load_image_classification("MNIST", train=True)


@pytest.fixture(scope="session")
def mnist_test():
    if not _mnist_available():
        pytest.skip("shared/data/MNIST is not present")
    return load_image_classification("MNIST", train=False, limit=5000)


def subset(dataset, n: int, offset: int = 0):
    """The samples ``offset .. offset + n`` of a TensorDataset, as a TensorDataset."""
    return torch.utils.data.TensorDataset(*(t[offset : offset + n] for t in dataset.tensors))


def make_trainer(max_epochs: int, callbacks=(), **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    defaults.update(kwargs)
    return L.Trainer(max_epochs=max_epochs, callbacks=list(callbacks), **defaults)


def run_worker(script: Path, *args, extra_path=(), **env) -> subprocess.CompletedProcess:
    """Run a DDP worker script (Lightning re-launches it for the other ranks) with the repository and
    ``extra_path`` importable and one thread per process; fails the test with its stderr on a non-zero exit."""
    path = os.pathsep.join([str(Path(__file__).resolve().parents[1]), *map(str, extra_path)])
    proc = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        env=dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def rank_results(out: Path, devices: int) -> list[dict]:
    """What each rank of a worker run saved as ``out/rank{r}.pt``."""
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(devices)]
