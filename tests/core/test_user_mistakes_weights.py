"""User mistakes about pruning weights, each through a real Trainer.fit (issue 15 case 4, issue 14)."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback

from lightning_ted import TED, ConstantSchedule, DynamicPruningDataModule, InfoBatch, RandomSubset, TEDPruningCallback
from lightning_ted.core.selection import epoch_generator
from lightning_ted.core.state import ScoreState
from lightning_ted.methods import StepScaleWarning, WeightBoundWarning
from lightning_ted.research import TEDVariant
from lightning_ted.zoo.demo import ImageClassifier


class WeightRecorder(Callback):
    """Every weight the training steps received, per epoch, and the step count predicted at fit start."""

    def __init__(self) -> None:
        self.weights: dict[int, list[torch.Tensor]] = {}
        self.predicted_steps: int | None = None

    def on_fit_start(self, trainer, pl_module):
        if trainer.datamodule.method.exact_kept_count:
            self.predicted_steps = trainer.datamodule.total_optimizer_steps()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        ctx = trainer.datamodule.batch_context
        self.weights.setdefault(trainer.current_epoch, []).append(ctx.weight.clone())


@pytest.mark.parametrize(
    "make_method",
    [TED, lambda: TEDVariant(selection="pps"), InfoBatch, lambda: RandomSubset(reweight=True)],
    ids=["ted", "ted_pps", "infobatch", "random_reweight"],
)
def test_user_sets_ratio_0_99_and_weights_stay_bounded(mnist_train, make_method):
    """ratio=0.99 used to weigh the 1% kept 100x (accuracy fell to chance); now no weight exceeds
    max_weight (10), one warning says the kept set was enlarged, and the step count is what was predicted."""
    n, epochs = 600, 3
    L.seed_everything(0, verbose=False)
    method = make_method()
    dm = DynamicPruningDataModule(
        subset(mnist_train, n),
        method=method,
        schedule=ConstantSchedule(ratio=0.99, warmup_epochs=1, anneal=0.0),
        batch_size=32,
        seed=0,
    )
    recorder = WeightRecorder()
    trainer = make_trainer(epochs, callbacks=[TEDPruningCallback(), recorder])
    with pytest.warns(WeightBoundWarning) as caught:
        trainer.fit(ImageClassifier(one_cycle=method.exact_kept_count), datamodule=dm)
    bound_warnings = [w for w in caught if issubclass(w.category, WeightBoundWarning)]
    assert len(bound_warnings) == 1 and "max_weight=10" in str(bound_warnings[0].message)
    step_warnings = [w for w in caught if issubclass(w.category, StepScaleWarning)]
    heavy = any(float(torch.cat(w).mean()) > 2.0 for e, w in recorder.weights.items() if e > 0)
    assert len(step_warnings) == int(heavy)  # TED and RS2 keep ~60 at weight ~10; InfoBatch's mean stays < 2

    assert dm.schedule.prune_ratio(1) == dm.schedule.prune_ratio(2) == 0.99  # the user's ratio really applied
    for epoch in (1, 2):
        weights = torch.cat(recorder.weights[epoch])
        assert float(weights.max()) <= method.max_weight
        assert weights.numel() == int(dm.kept_history[epoch])
        if method.exact_kept_count:
            assert int(dm.kept_history[epoch]) == n // 10 == method.expected_kept(n, 0.99, epoch)
        else:
            assert int(dm.kept_history[epoch]) < n  # InfoBatch still prunes, only less
    if method.exact_kept_count:
        assert recorder.predicted_steps == trainer.global_step
    assert torch.isfinite(trainer.callback_metrics["prune/saved_fraction"])


@pytest.mark.parametrize(
    ("method", "ratio", "warns"),
    [
        (lambda: TED(normalize=False), 0.7, True),  # each kept sample weighs 1 / 0.3 = 3.3x: 3.3x plain's step
        (lambda: TED(normalize=False), 0.3, False),
        (lambda: TED(), 0.7, False),  # the default: the mean weight bounded at 2, not above it
        (lambda: TED(normalize=True), 0.7, False),  # weights averaging 1
        (lambda: RandomSubset(), 0.7, False),  # RS2 keeps weight 1
    ],
    ids=["ted-unnormalized-0.7", "ted-unnormalized-0.3", "ted-default-0.7", "ted-normalized-0.7", "random-0.7"],
)
def test_user_prunes_hard_with_reweighting_and_is_told_the_step_grows(method, ratio, warns):
    n = 1000
    state = ScoreState(n)
    state.apply(torch.arange(n), torch.randn(n, generator=torch.Generator().manual_seed(0)), 0.0, 0)
    pruner = method()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in (1, 2):
            pruner.check_step_scale(pruner.select(state, ratio, epoch_generator(0, epoch)))
    steps = [w for w in caught if "each step is about" in str(w.message)]
    assert len(steps) == (1 if warns else 0)  # once per method instance
