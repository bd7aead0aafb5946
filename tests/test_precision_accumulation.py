"""Taylor terms survive mixed precision and gradient accumulation (the scale factors cancel)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback

from lightning_ted import TED, DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.demo import ImageClassifier


class FirstBatches(Callback):
    """Copies the observation rows (index, loss, term) buffered by the first ``n`` training steps."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append(trainer.datamodule.state._pending[-1].cpu().clone())


def _first_steps(train, batches: int, **trainer_kwargs) -> list[torch.Tensor]:
    L.seed_everything(0, verbose=False)
    dm = DynamicPruningDataModule(train, method=TED(), schedule=RollerCoasterSchedule(), batch_size=64)
    probe = FirstBatches()
    trainer = make_trainer(1, callbacks=[TEDPruningCallback(), probe], limit_train_batches=batches, **trainer_kwargs)
    trainer.fit(ImageClassifier(one_cycle=False), datamodule=dm)
    return probe.rows


@pytest.fixture(scope="module")
def train(mnist_train):
    return subset(mnist_train, 512)


def test_bf16_mixed_terms_match_fp32(train):
    fp32 = _first_steps(train, 1, precision="32-true")[0]
    bf16 = _first_steps(train, 1, precision="bf16-mixed")[0]
    assert torch.equal(fp32[:, 0], bf16[:, 0])  # same samples
    assert bf16.dtype == torch.float64 and bf16[:, 2].abs().sum() > 0
    # stated tolerance: bf16 keeps ~3 significant digits; the terms agree to 5% in relative L2 norm
    rel = (bf16[:, 2] - fp32[:, 2]).norm() / fp32[:, 2].norm()
    assert rel < 0.05, float(rel)
    assert torch.corrcoef(torch.stack([bf16[:, 2], fp32[:, 2]]))[0, 1] > 0.995


def test_gradient_accumulation_gives_per_sample_terms(train):
    plain = _first_steps(train, 2, accumulate_grad_batches=1)
    accumulated = _first_steps(train, 2, accumulate_grad_batches=2)
    # one row per sample, not per accumulated step
    assert [r.shape[0] for r in accumulated] == [64, 64]
    # the first step sees identical parameters: the 1/accumulate loss factor must cancel exactly
    assert torch.allclose(accumulated[0], plain[0], rtol=1e-6, atol=1e-12)
    # the second batch of an accumulation window is scored before any optimizer step: its terms differ
    # from the plain run, whose parameters moved after batch one
    assert torch.equal(accumulated[1][:, 0], plain[1][:, 0])
    assert not torch.allclose(accumulated[1][:, 2], plain[1][:, 2])
