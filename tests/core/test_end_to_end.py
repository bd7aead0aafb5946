"""Trainer.fit with the callback on a real MNIST subset: schedule, coverage, weights and accuracy."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback

from lightning_ted import TED, DynamicPruningDataModule, FullData, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.zoo.demo import ImageClassifier


class EpochRecorder(Callback):
    """Records, per epoch, the kept indices and every (index, weight) the training steps saw."""

    def __init__(self) -> None:
        self.kept: dict[int, torch.Tensor] = {}
        self.seen: dict[int, list[torch.Tensor]] = {}
        self.weights: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # not on_train_epoch_start: Lightning skips that hook when it resumes in the middle of an epoch
        epoch, ctx = trainer.current_epoch, trainer.datamodule.batch_context
        if epoch not in self.kept:
            self.kept[epoch] = trainer.datamodule.current_selection.indices.clone()
        self.seen.setdefault(epoch, []).append(ctx.index.clone())
        self.weights.setdefault(epoch, []).append(ctx.weight.clone())


def fit(method, train, test, epochs, ratio=0.5, beta=0.25, seed=0, batch_size=64):
    L.seed_everything(seed, verbose=False)
    model = ImageClassifier(lr=0.05)
    dm = DynamicPruningDataModule(
        train,
        method=method,
        schedule=RollerCoasterSchedule(ratio=ratio, beta=beta),
        test_dataset=test,
        batch_size=batch_size,
        seed=seed,
    )
    recorder = EpochRecorder()
    trainer = make_trainer(epochs, callbacks=[TEDPruningCallback(), recorder])
    trainer.fit(model, datamodule=dm)
    fit_metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
    acc = 100 * trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"]
    return dm, recorder, acc, fit_metrics


@pytest.mark.slow
def test_ted_trains_on_schedule_and_matches_full_accuracy(mnist_train, mnist_test):
    train, epochs, ratio = subset(mnist_train, 12000), 6, 0.5
    dm, rec, ted_acc, metrics = fit(TED(), train, mnist_test, epochs, ratio)
    _, _, full_acc, _ = fit(FullData(), train, mnist_test, epochs, ratio)
    n = len(train)
    sched = dm.schedule

    # the kept count of every epoch is the schedule's, within one sample
    expected = [n - round(sched.prune_ratio(e) * n) for e in range(epochs)]
    assert sched.prune_ratio(0) == 0.0 and sched.prune_ratio(epochs - 1) == 0.0  # warm-up, anneal
    assert any(sched.prune_ratio(e) > 0.3 for e in range(epochs))
    for e in range(epochs):
        assert abs(int(dm.kept_history[e]) - expected[e]) <= 1, (e, dm.kept_history.tolist(), expected)
    saved = 1 - sum(expected) / (n * epochs)
    assert dm.saved_fraction(epochs - 1) == pytest.approx(saved, abs=epochs / n)
    assert metrics["prune/saved_fraction"] == pytest.approx(saved, abs=epochs / n)
    assert metrics["prune/kept_samples"] == n  # the last (anneal) epoch trains on everything
    assert metrics["prune/nonfinite_losses"] == 0
    assert metrics["prune/score_q10"] <= metrics["prune/score_q50"] <= metrics["prune/score_q90"]

    for e in range(epochs):
        seen = torch.cat(rec.seen[e])
        # every kept sample is trained on exactly once in its epoch, and nothing else is
        assert seen.numel() == rec.kept[e].numel()
        assert torch.equal(seen.sort().values, rec.kept[e].sort().values)
        # the default bounds the step scale: the kept weights average at most 2 (1 / (1 - q))
        w = torch.cat(rec.weights[e]).double()
        assert w.mean().item() <= 2.0 * (1 + 1e-4)
        assert w.sum().item() == pytest.approx(min(n, 2.0 * w.numel()), rel=1e-4)  # unbiased (sum N) up to it

    # all samples have scores after the run; pruned epochs dropped different samples over time
    assert torch.isfinite(dm.state.score).all()
    assert (dm.state.seen >= epochs - 4).all()
    print(f"TED {ted_acc:.2f} vs full {full_acc:.2f}, saved {saved:.3f}")
    assert abs(ted_acc - full_acc) <= 1.0, (ted_acc, full_acc)


@pytest.mark.parametrize("accumulate,drop_last", [(1, False), (3, False), (2, True)])
def test_total_optimizer_steps_is_exact_before_training(mnist_train, accumulate, drop_last):
    train = subset(mnist_train, 1000)
    L.seed_everything(0, verbose=False)
    dm = DynamicPruningDataModule(
        train, method=TED(), schedule=RollerCoasterSchedule(ratio=0.5), batch_size=48, drop_last=drop_last
    )
    predicted = {}

    class Probe(Callback):
        def on_fit_start(self, trainer, pl_module):
            predicted["steps"] = trainer.datamodule.total_optimizer_steps()

    trainer = make_trainer(5, callbacks=[TEDPruningCallback(), Probe()], accumulate_grad_batches=accumulate)
    trainer.fit(ImageClassifier(one_cycle=True), datamodule=dm)  # OneCycleLR raises if it is stepped too often
    assert predicted["steps"] == trainer.global_step
    assert trainer.global_step < 5 * math.ceil(math.ceil(1000 / 48) / accumulate)  # fewer than unpruned


def test_tensor_dataset_batches_are_gathered_exactly_as_default_collate_builds_them():
    """The one-index-per-batch path for TensorDataset gives the batch, indices and weights of the per-item path."""
    from torch.utils.data import TensorDataset

    from lightning_ted.core.batch import IndexedCollate
    from lightning_ted.core.selection import Selection
    from lightning_ted.data.loader import KeptDataset

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(60, 1, 4, 4, generator=g), torch.randint(0, 10, (60,), generator=g))
    sel = Selection(torch.randperm(60, generator=g)[:40].sort().values, 25, 1.7, 60)
    positions = torch.randperm(40, generator=g)[:16].tolist()
    fast = IndexedCollate()(KeptDataset(data, sel, gather_tensors=True).__getitems__(positions))
    slow = IndexedCollate()(KeptDataset(data, sel, gather_tensors=False).__getitems__(positions))
    assert type(fast.data) is type(slow.data) and len(fast.data) == len(slow.data) == 2
    for a, b in zip(fast.data, slow.data, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert torch.equal(fast.index, slow.index) and torch.equal(fast.weight, slow.weight)
    assert fast.weight.unique().tolist() != [1.0]  # both weight classes are in the batch
