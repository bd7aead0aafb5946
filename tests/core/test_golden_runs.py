"""A fixed-seed run of every method gives the same batches, kept sets, weights, scores and parameters as the
values saved in ``golden/runs.pt`` before the package was reorganised around one core (issue 31): moving code
between modules must not change what a run computes.

The saved values were written by this file (``LIGHTNING_TED_WRITE_GOLDEN=1 pytest tests/core/test_golden_runs.py``)
at commit fc16c6f. They compare bit for bit where torch's version and CPU kernel capability are those that
wrote them; elsewhere float reductions may round differently, so the floats compare within 1e-5 and the
integers (kept sets, counts, steps) still exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback
from torch import nn

from lightning_ted import (
    ConstantSchedule,
    DynamicPruningDataModule,
    LinearSchedule,
    RollerCoasterSchedule,
    TEDPruningCallback,
    pruned_loss,
)
from lightning_ted.methods import METHODS

GOLDEN = Path(__file__).parent / "golden" / "runs.pt"
WRITE = os.environ.get("LIGHTNING_TED_WRITE_GOLDEN") == "1"
N, BATCH, EPOCHS = 256, 32, 4
SCHEDULES = {
    "constant": lambda: ConstantSchedule(ratio=0.5),
    "rollercoaster": lambda: RollerCoasterSchedule(ratio=0.5, beta=0.5),
    "linear": lambda: LinearSchedule(ratio=0.5),
}
METHOD_OPTIONS = {"cat": {"score_epochs": 2}}
CASES = [("constant", method, False) for method in sorted(METHODS)]
CASES += [("rollercoaster", "ted", False), ("linear", "infobatch", False), ("constant", "ted", True)]


def case_id(case: tuple[str, str, bool]) -> str:
    return f"{case[0]}-{case[1]}" + ("-device" if case[2] else "")


class TinyNet(L.LightningModule):
    """Pooled MNIST into a 2-layer MLP: about 1k parameters, so the saved values stay small."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(49, 16), nn.Tanh(), nn.Linear(16, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return pruned_loss(self, F.cross_entropy(self.net(x), y, reduction="none"))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class Batches(Callback):
    """Every training batch's sample indices and weights, in the order trained."""

    def __init__(self) -> None:
        self.index: list[torch.Tensor] = []
        self.weight: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        context = trainer.datamodule.batch_context
        self.index.append(context.index.clone())
        self.weight.append(context.weight.clone())


def run(case: tuple[str, str, bool], train) -> dict[str, object]:
    """One fixed-seed fit under ``case`` (schedule, method, device_resident): what it trained and where it ended."""
    schedule, method, device_resident = case
    L.seed_everything(0, verbose=False)
    model = TinyNet()
    dm = DynamicPruningDataModule(
        train,
        method=METHODS[method](**METHOD_OPTIONS.get(method, {})),
        schedule=SCHEDULES[schedule](),
        batch_size=BATCH,
        device_resident=device_resident,
    )
    batches = Batches()
    trainer = make_trainer(EPOCHS, callbacks=[TEDPruningCallback(progress_bar=False, summary=False), batches])
    trainer.fit(model, datamodule=dm)
    return {
        "index": torch.cat(batches.index),
        "batch_sizes": torch.tensor([len(i) for i in batches.index]),
        "weight": torch.cat(batches.weight),
        "kept_history": dm.kept_history.clone(),
        "score": dm.state.score.clone(),
        "seen": dm.state.seen.clone(),
        "last_epoch": dm.state.last_epoch.clone(),
        "ig_sums": dm.generalization.sums.clone(),
        "global_step": torch.tensor(trainer.global_step),
        **{f"param/{name}": p.detach().clone() for name, p in model.named_parameters()},
    }


def platform() -> dict[str, str]:
    return {"torch": str(torch.__version__), "cpu": str(torch.backends.cpu.get_cpu_capability())}


@pytest.fixture(scope="module")
def train(mnist_train):
    return subset(mnist_train, N)


@pytest.fixture(scope="module")
def golden():
    if WRITE:
        return {"platform": platform(), "runs": {}}
    assert GOLDEN.exists(), f"{GOLDEN} is missing: write it with LIGHTNING_TED_WRITE_GOLDEN=1 (see the docstring)"
    return torch.load(GOLDEN, weights_only=True)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fixed_seed_run_matches_the_values_saved_before_the_reorganisation(case, train, golden):
    got = run(case, train)
    if WRITE:
        golden["runs"][case_id(case)] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        torch.save(golden, GOLDEN)
        return
    want = golden["runs"][case_id(case)]
    assert sorted(got) == sorted(want), case
    exact = golden["platform"] == platform()
    for key, value in want.items():
        if value.is_floating_point() and not exact:
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, equal_nan=True, msg=f"{case}: {key}")
        else:
            torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True, msg=f"{case}: {key}")
