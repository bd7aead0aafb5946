"""``torch.compile`` on the user's LightningModule: the head hooks still fire and the scores stay right.

The callback itself runs eagerly; only the module's forward is compiled. ``drop_last=True`` keeps every
batch the same shape, so the forward compiles once (a smaller last batch would trigger one recompile).
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import make_trainer, subset

from lightning_ted import TED, DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.zoo.demo import ImageClassifier


def _scores(train, backend: str | None, drop_last: bool) -> torch.Tensor:
    L.seed_everything(0, verbose=False)
    torch._dynamo.reset()
    dm = DynamicPruningDataModule(
        train, method=TED(), schedule=RollerCoasterSchedule(), batch_size=64, drop_last=drop_last
    )
    model = ImageClassifier(one_cycle=False)
    compiled = model if backend is None else torch.compile(model, backend=backend)
    make_trainer(2, callbacks=[TEDPruningCallback()], deterministic=False).fit(compiled, datamodule=dm)
    return dm.state.score


@pytest.fixture(scope="module")
def train(mnist_train):
    return subset(mnist_train, 1000)


def test_compiled_module_gives_the_eager_scores_exactly_with_aot_eager(train):
    # aot_eager traces forward and backward like inductor but runs the captured graph op by op
    eager = _scores(train, None, drop_last=False)
    compiled = _scores(train, "aot_eager", drop_last=False)  # last batch of 1000 % 64 = 40 recompiles
    assert torch.isfinite(eager).sum() > 0
    assert torch.equal(eager, compiled)


@pytest.mark.slow
def test_inductor_compiled_module_matches_eager_scores(train):
    eager = _scores(train, None, drop_last=True)
    compiled = _scores(train, "inductor", drop_last=True)
    finite = torch.isfinite(eager)
    assert torch.equal(finite, torch.isfinite(compiled))  # the same samples were scored
    assert torch.allclose(compiled[finite], eager[finite], rtol=1e-3, atol=1e-5)
