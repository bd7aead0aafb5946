"""Issue 30: schedules set by the internal-generalization pace (research): a fixed budget spent where pruning is
cheap, with the step count known in advance, and a tolerance with no ratio to guess."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.nn import functional as F

from lightning_ted import DynamicPruningDataModule, TEDPruningCallback, pruned_loss, total_optimizer_steps
from lightning_ted.observe.generalization import GeneralizationMeter
from lightning_ted.research import GeneralizationBudgetSchedule, GeneralizationToleranceSchedule

N, B, EPOCHS = 320, 32, 10


class Classifier(L.LightningModule):
    """A linear classifier whose optimizer schedule is sized with ``total_optimizer_steps`` when asked."""

    def __init__(self, one_cycle: bool = False) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)
        self.one_cycle = one_cycle
        self.planned_steps: int | None = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        return pruned_loss(self, F.cross_entropy(self.fc(x), y, reduction="none"))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        if not self.one_cycle:
            return opt
        self.planned_steps = total_optimizer_steps(self.trainer)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=self.planned_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _data(n: int = N) -> torch.utils.data.TensorDataset:
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randn(n, 8, generator=gen) + 1.0 * F.one_hot(y, 8).float()
    return torch.utils.data.TensorDataset(x, y)


def _fit(schedule, method="ted", one_cycle=True, ckpt_path=None, callbacks=(), max_epochs=EPOCHS, **trainer_kwargs):
    L.seed_everything(0)
    dm = DynamicPruningDataModule(_data(), batch_size=B, method=method, schedule=schedule, seed=0)
    model = Classifier(one_cycle)
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", callbacks=[TEDPruningCallback(), *callbacks],
                        logger=False, enable_checkpointing=bool(callbacks), enable_progress_bar=False,
                        enable_model_summary=False, deterministic=True, **trainer_kwargs)  # fmt: skip
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return dm, model, trainer


def test_budget_schedule_saves_exactly_what_was_asked_in_the_planned_steps():
    """30% of 10 x 320 sample-passes in whole batches; OneCycleLR sized before training ends with the run; the
    ratios move with the pace once there are readings, and are the pure function of the final meter."""
    schedule = GeneralizationBudgetSchedule(saved=0.3)
    dm, model, trainer = _fit(schedule)
    saved = N * EPOCHS - int(dm.kept_history.sum())
    assert saved == round(0.3 * EPOCHS * N / B) * B
    assert trainer.global_step == model.planned_steps == sum(math.ceil(k / B) for k in dm.kept_history.tolist())
    ratios = [1 - k / N for k in dm.kept_history.tolist()]
    assert ratios == pytest.approx([schedule.prune_ratio(e) for e in range(EPOCHS)], abs=1e-9)
    assert ratios[0] == 0 and ratios[-1] == 0, "warm-up and anneal train all data"
    assert any(math.isfinite(schedule.pace(e)) for e in range(EPOCHS)), "the run had readings to act on"


def _meter_with_gaps(gaps: dict[int, float], n: int = 100) -> GeneralizationMeter:
    """A meter whose epochs read a kept change of -1 and a pruned change of ``gap - 1`` (10 samples each side)."""
    meter = GeneralizationMeter(n)
    meter._grow(max(gaps))
    for epoch, gap in gaps.items():
        meter.sums[epoch] = torch.tensor([-10.0, 10, (gap - 1.0) * 10, 10, 10, 5.0, 10], dtype=torch.float64)
    return meter


def test_budget_schedule_moves_drops_to_the_epochs_where_sitting_out_costs_less():
    """Cheap epochs (gap 0.1) after costly ones (gap 0.5): their share rises; the total stays the budget."""
    schedule = GeneralizationBudgetSchedule(saved=0.3, swing=0.5, window=1, max_epochs=10)
    schedule.attach(_meter_with_gaps({2: 0.5, 3: 0.5, 4: 0.5, 5: 0.1, 6: 0.1, 7: 0.1}), 100, 1, 100, True)
    ratios = [schedule.prune_ratio(e) for e in range(10)]
    assert sum(ratios) * 100 == pytest.approx(0.3 * 10 * 100)
    even = 0.3 * 10 / 8
    first = pytest.approx(even, abs=0.01)
    assert ratios[1] == first and ratios[2] == first, "no reading before epoch 3: the fair share"
    assert ratios[6] > ratios[5] and ratios[6] > even, "the first cheap reading raises the next epoch's share"
    assert ratios[-1] == 0 and ratios[0] == 0


def test_budget_schedule_resumes_to_the_same_ratios(tmp_path):
    """The ratios are read from the checkpointed meter only: a run resumed after epoch 5 prunes as the uninterrupted
    one did."""
    saver = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    full_dm, _, full = _fit(GeneralizationBudgetSchedule(saved=0.3), callbacks=[saver])
    dm, _, trainer = _fit(GeneralizationBudgetSchedule(saved=0.3), ckpt_path=tmp_path / "epoch=5.ckpt")
    assert torch.equal(dm.kept_history, full_dm.kept_history)
    torch.testing.assert_close(dm.generalization.sums, full_dm.generalization.sums, rtol=0, atol=1e-12)
    assert trainer.global_step == full.global_step


def test_tolerance_schedule_rises_while_pruned_samples_keep_pace_and_falls_back_when_they_stop():
    schedule = GeneralizationToleranceSchedule(tolerance=0.5, start=0.2, step=0.1, window=1, max_epochs=8)
    # epochs 1..3: the pruned samples improve 80% as fast as the kept ones (gap 0.2); epochs 4..6: 10% (gap 0.9)
    meter = _meter_with_gaps({e: 0.2 if e <= 3 else 0.9 for e in range(1, 7)}, n=10)
    schedule.attach(meter, 10, 1, 10, True)
    ratios = [round(schedule.prune_ratio(e), 6) for e in range(8)]
    assert ratios == [0.0, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.0]


def test_tolerance_schedule_trains_and_logs_its_ratio():
    dm, _, trainer = _fit(GeneralizationToleranceSchedule(tolerance=0.5, start=0.3), one_cycle=False)
    history = dm.kept_history.tolist()
    assert history[0] == N and history[-1] == N and min(history) < N


def test_user_sizes_onecycle_with_the_tolerance_schedule_is_told_no_step_count_exists():
    with pytest.raises(RuntimeError, match="not known before training.*epoch-based"):
        _fit(GeneralizationToleranceSchedule(), one_cycle=True)


class FullLengthOneCycle(Classifier):
    """OneCycleLR sized with Lightning's full-data step estimate."""

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        steps = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def test_user_sizes_onecycle_with_estimated_stepping_batches_under_the_tolerance_schedule_is_warned():
    dm = DynamicPruningDataModule(_data(), batch_size=B, schedule=GeneralizationToleranceSchedule(start=0.3))
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.warns(UserWarning, match="GeneralizationToleranceSchedule sets each ratio from the run"):
        trainer.fit(FullLengthOneCycle(), datamodule=dm)


def test_user_gives_the_budget_schedule_to_infobatch_is_refused():
    with pytest.raises(ValueError, match="loss-dependent number of samples"):
        _fit(GeneralizationBudgetSchedule(saved=0.3), method="infobatch", one_cycle=False)


def test_user_asks_the_budget_schedule_for_more_than_its_pruning_epochs_can_save_is_refused():
    with pytest.raises(ValueError, match=r"saved=0.7.*at most"):
        _fit(GeneralizationBudgetSchedule(saved=0.7), one_cycle=False)


def test_user_cuts_epochs_with_limit_train_batches_under_the_budget_schedule_cannot_size_a_step_schedule():
    with pytest.raises(RuntimeError, match="limit_train_batches=0.5"):
        _fit(GeneralizationBudgetSchedule(saved=0.2), one_cycle=True, limit_train_batches=0.5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: GeneralizationBudgetSchedule(saved=1.0), "prune ratio must be in"),
        (lambda: GeneralizationBudgetSchedule(swing=2.0), "swing must be in"),
        (lambda: GeneralizationToleranceSchedule(tolerance=-0.1), "tolerance must be in"),
        (lambda: GeneralizationToleranceSchedule(step=0.0), "step must be in"),
        (lambda: GeneralizationToleranceSchedule(window=0), "window must be a positive"),
    ],
)
def test_user_gives_an_adaptive_schedule_a_setting_out_of_range_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_the_examples_in_the_docstrings_run():
    import doctest

    from lightning_ted.core import adaptive_schedules

    result = doctest.testmod(adaptive_schedules, verbose=False)
    assert result.attempted >= 2 and result.failed == 0
