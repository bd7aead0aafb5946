"""TED's pruned-set reference: the forward-only pass over pruned samples, checked against explicit autograd.

The brute force never uses the package's head algebra: per-sample gradients of the head's weight and bias
come from ``torch.autograd.grad`` on each sample's loss, at the parameters the run had at that moment.
"""

from __future__ import annotations

import copy

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
    RollerCoasterSchedule,
    TEDPruningCallback,
    pruned_loss,
)
from lightning_ted.core.run import PruningRun
from lightning_ted.core.selection import Selection, epoch_generator
from lightning_ted.methods.pruned_reference import pruned_indices
from lightning_ted.research import TEDVariant


class MLP(L.LightningModule):
    """Deterministic model (no dropout, no batch norm) so per-sample recomputation is exact."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.lr = lr
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(x))

    def per_sample_loss(self, batch):
        x, y = batch
        return F.cross_entropy(self(x), y, reduction="none")

    def training_step(self, batch, batch_idx):
        return pruned_loss(self, self.per_sample_loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def head_grads(model: MLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample head gradients ``[vec(dW), db]`` (one row per sample) by explicit autograd."""
    rows = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        gw, gb = torch.autograd.grad(loss, [model.head.weight, model.head.bias])
        rows.append(torch.cat([gw.reshape(-1), gb]))
    return torch.stack(rows)


def ted_callback(trainer) -> TEDPruningCallback:
    return next(c for c in trainer.callbacks if isinstance(c, TEDPruningCallback))


class Probe(Callback):
    """After TEDPruningCallback: checks the epoch's reference and one step's terms against autograd."""

    def __init__(self, train, seed: int) -> None:
        self.train, self.seed = train, seed
        self.checked_refs: list[int] = []
        self.checked_terms = 0
        self._before: MLP | None = None
        self._observed: list = []

    def setup(self, trainer, pl_module, stage):
        state = trainer.datamodule.state
        observe = state.observe

        def spy(indices, losses, terms):
            self._observed.append((indices.clone(), None if terms is None else terms.clone()))
            observe(indices, losses, terms)

        state.observe = spy

    def on_train_epoch_start(self, trainer, pl_module):
        dm = trainer.datamodule
        ref = dm.method.references.pruned  # (epoch, G, gb), held by the TED method
        epoch = trainer.current_epoch
        assert ref[0] == epoch
        idx = pruned_indices(dm.current_selection, dm.method.reference_size, epoch_generator(self.seed, epoch, 3))
        if idx.numel() == 0:
            assert ref[1] is None  # nothing pruned: the batch reference is used
            return
        x, y = (t[idx] for t in self.train.tensors)
        expected = head_grads(pl_module, x, y).mean(0)
        got = torch.cat([ref[1].reshape(-1), ref[2]])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
        self.checked_refs.append(epoch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self._before = copy.deepcopy(pl_module)  # the parameters this step's forward used

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pruned = trainer.datamodule.method.references.pruned
        if batch_idx != 0 or pruned[1] is None:
            return
        indices, terms = self._observed[-1]
        x, y = (t[indices] for t in self.train.tensors)
        g = head_grads(self._before, x, y)
        ref = torch.cat([pruned[1].reshape(-1), pruned[2]])
        torch.testing.assert_close(terms, pl_module.lr * (g @ ref), rtol=1e-4, atol=1e-9)
        self.checked_terms += 1


def _fit(train, method, epochs=3, extra=(), model=None):
    L.seed_everything(0, verbose=False)
    dm = DynamicPruningDataModule(
        train, method=method, schedule=RollerCoasterSchedule(ratio=0.5, beta=0.3), batch_size=50, seed=0
    )
    model = model or MLP()
    trainer = make_trainer(epochs, callbacks=[TEDPruningCallback(), *extra])
    trainer.fit(model, datamodule=dm)
    return dm, model


def test_pruned_indices_are_pruned_and_cover_all_when_few():
    kept = torch.tensor([0, 2, 3, 7, 9])
    sel = Selection(kept, len(kept), 1.0, 10)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(pruned_indices(sel, 100, g), torch.tensor([1, 4, 5, 6, 8]))
    sub = pruned_indices(sel, 3, g)
    assert sub.numel() == 3 and not torch.isin(sub, kept).any()
    assert pruned_indices(Selection.everything(10), 5, g).numel() == 0
    # same generator seed, same subsample: every rank and a resumed run draw the same samples
    a = pruned_indices(sel, 3, torch.Generator().manual_seed(4))
    assert torch.equal(a, pruned_indices(sel, 3, torch.Generator().manual_seed(4)))


def test_pruned_indices_at_scale_touch_no_kept_sample():
    n = 2_000_000
    kept = torch.randperm(n, generator=torch.Generator().manual_seed(1))[: n // 2]
    sub = pruned_indices(Selection(kept, kept.numel(), 1.0, n), 4096, torch.Generator().manual_seed(2))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[kept] = True
    assert sub.numel() == 4096 and not mask[sub].any()


@pytest.mark.parametrize("reference_size", [10_000, 64])  # every pruned sample, then a subsample
def test_pruned_reference_and_terms_match_autograd(mnist_train, reference_size):
    train = subset(mnist_train, 600)
    probe = Probe(train, seed=0)
    dm, _ = _fit(train, TEDVariant(reference="pruned", reference_size=reference_size, q=0.8), extra=[probe])
    assert probe.checked_refs == [1, 2]  # epoch 0 prunes nothing
    assert probe.checked_terms == 2
    assert torch.isfinite(dm.state.score).all()


def test_all_reference_trains_and_scores(mnist_train):
    train = subset(mnist_train, 600)
    dm, model = _fit(train, TEDVariant(reference="all", score="cross", q=0.8))
    assert torch.isfinite(dm.state.score).all() and dm.state.nonfinite_count == 0
    assert (dm.kept_history[1:] < len(train)).all()


def test_module_without_per_sample_loss_is_refused_at_setup(mnist_train):
    class NoLossMethod(MLP):
        per_sample_loss = None

    with pytest.raises(AttributeError, match=r"per_sample_loss\(self, batch\)"):
        _fit(subset(mnist_train, 100), TEDVariant(reference="pruned"), epochs=1, model=NoLossMethod())


def test_per_sample_loss_with_the_wrong_shape_is_refused(mnist_train):
    class MeanLoss(MLP):
        def per_sample_loss(self, batch):
            x, y = batch
            if self.training:
                return F.cross_entropy(self(x), y, reduction="none")
            return F.cross_entropy(self(x), y).reshape(1)  # a batch mean in the re-scoring pass

    with pytest.raises(ValueError, match="one loss per sample"):
        _fit(subset(mnist_train, 300), TEDVariant(reference="pruned"), epochs=2, model=MeanLoss())


def test_reference_options_are_validated():
    with pytest.raises(ValueError, match="reference must be one of"):
        TEDVariant(reference="kept-ish")
    with pytest.raises(ValueError, match="reference_size"):
        TEDVariant(reference="pruned", reference_size=0)


def test_the_runs_checkpoint_round_trip_keeps_the_pruned_reference():
    """The method's per-rank state rides the run's checkpoint (the datamodule's), not the callback's."""
    method = TEDVariant(reference="pruned")
    method.references.pruned = (1, torch.randn(10, 32), torch.randn(10))
    run = PruningRun(method, ConstantSchedule(ratio=0.5, warmup_epochs=0, anneal=0.0), seed=0)
    run.allocate(20)
    state = run.state_dict()
    assert state["method_run"]["pruned_ref_epoch"] == 1
    other = PruningRun(TEDVariant(reference="pruned"), ConstantSchedule(ratio=0.5, warmup_epochs=0, anneal=0.0), 0)
    other.allocate(20)
    other.load_state_dict(state, world=1, rank=0)
    restored, saved = other.method.references.pruned, method.references.pruned
    assert restored[0] == 1 and torch.equal(restored[1], saved[1]) and torch.equal(restored[2], saved[2])
    assert set(TEDPruningCallback().state_dict()) == set()  # the callback carries no pruning state


def test_an_older_checkpoint_with_the_reference_in_the_callbacks_state_still_restores_it():
    """Checkpoints written before 2026-12-07 put the method's run state into the callback's checkpoint: a
    callback restored before setup keeps it until the method is known, then hands it over."""
    method = TEDVariant(reference="pruned")
    method.references.pruned = (1, torch.randn(10, 32), torch.randn(10))
    old_state = method.run_state_dict(None)
    cb = TEDPruningCallback()
    cb.load_state_dict(old_state)
    assert cb._pending_state["pruned_ref_epoch"] == 1
