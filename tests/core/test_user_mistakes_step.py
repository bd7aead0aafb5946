"""What a user can get wrong in the training step, and what happens: each test is named for the user's action.

Catalogue (issue 15, step path; issue 17 for the eval-mode model): each case either scores correctly
(checked against brute force where there is a number to check) or stops or warns with a message that
names the cause and the fix.
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer, subset
from torch import nn
from torch.func import functional_call, grad, vmap

from lightning_ted import TED, DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback, pruned_loss
from lightning_ted.adapters.loss import sequence_loss
from lightning_ted.core.state import ScoreState
from lightning_ted.zoo.demo import ImageClassifier


@pytest.fixture(scope="module")
def tiny(mnist_train):
    return subset(mnist_train, 256)


def _datamodule(train, ratio=0.5, batch_size=64, method=None):
    schedule = RollerCoasterSchedule(ratio=ratio, warmup_epochs=1)
    return DynamicPruningDataModule(train, method=method or TED(), schedule=schedule, batch_size=batch_size)


def _fit(model, train, epochs=1, callbacks=None, **dm_kwargs):
    dm = _datamodule(train, **dm_kwargs)
    trainer = make_trainer(epochs, callbacks=callbacks or [TEDPruningCallback()])
    trainer.fit(model, datamodule=dm)
    return dm, trainer


class Mlp(L.LightningModule):
    """Flatten, a hidden layer with dropout, and a linear head; plain SGD at a constant learning rate."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return pruned_loss(self, F.cross_entropy(self(x), y, reduction="none"))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture
def observed(monkeypatch):
    """Every ``(index, losses, terms)`` the callback hands to the score state, in step order."""
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    original = ScoreState.observe

    def record(self, indices, losses, terms):
        seen.append((indices.clone(), losses.clone(), None if terms is None else terms.clone()))
        original(self, indices, losses, terms)

    monkeypatch.setattr(ScoreState, "observe", record)
    return seen


# ----------------------------------------------------------------------------- case 1
class CallsTheModelFourTimes(Mlp):
    """R-drop style: two dropout views in the loss, plus a metric under no_grad and one on detached logits.

    Keeps, per step, what a brute-force check needs: the head inputs of the two views, the head's
    parameters before the optimizer step, and the batch's labels and weights.
    """

    def __init__(self) -> None:
        super().__init__(dropout=0.3)
        self.steps: list[dict] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        h1, h2 = self.body(x), self.body(x)  # two dropout masks
        z1, z2 = self.head(h1), self.head(h2)
        with torch.no_grad():
            self.log("train_acc", (self(x).argmax(1) == y).float().mean())
        self.log("train_conf", self(x).detach().softmax(1).max(1).values.mean())  # gradient never arrives
        ctx = self.trainer.datamodule.batch_context
        self.steps.append(
            dict(
                h=(h1.detach().clone(), h2.detach().clone()),
                y=y.clone(),
                w=ctx.weight.clone().double(),
                params={n: p.detach().clone().double() for n, p in self.head.named_parameters()},
            )
        )
        losses = 0.7 * F.cross_entropy(z1, y, reduction="none") + 0.3 * F.cross_entropy(z2, y, reduction="none")
        return pruned_loss(self, losses)


def _brute_force_igd(step: dict, head: nn.Linear, lr: float) -> torch.Tensor:
    """``lr <g_k, gbar>`` with ``g_k`` the per-sample head gradient through both views, by autograd."""

    def loss_k(params, h1, h2, y):
        z1 = functional_call(head, params, (h1.double(),))
        z2 = functional_call(head, params, (h2.double(),))
        return 0.7 * F.cross_entropy(z1, y) + 0.3 * F.cross_entropy(z2, y)

    h1, h2 = step["h"]
    per_sample = vmap(grad(loss_k), in_dims=(None, 0, 0, 0))(step["params"], h1, h2, step["y"])
    g = torch.cat([per_sample[n].reshape(h1.shape[0], -1) for n in sorted(per_sample)], dim=1)
    gbar = (step["w"][:, None] * g).sum(0) / h1.shape[0]
    return lr * (g @ gbar)


def test_user_calls_the_model_several_times_in_training_step(tiny, observed):
    L.seed_everything(0, verbose=False)
    model = CallsTheModelFourTimes()
    dm, _ = _fit(model, tiny, epochs=2, method=TED(score="igd", normalize=False))
    assert len(observed) == len(model.steps) == 4 + 2  # a full epoch, then a pruned one
    assert any(bool((s["w"] != 1).any()) for s in model.steps)  # the pruned epoch weighs samples
    for step, (_, _, terms) in zip(model.steps, observed, strict=True):
        expected = _brute_force_igd(step, model.head, lr=0.1)
        assert expected.abs().max() > 1e-4
        torch.testing.assert_close(terms.double(), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


# ----------------------------------------------------------------------------- case 7
class ClassifierRegisteredFirst(Mlp):
    def __init__(self) -> None:
        L.LightningModule.__init__(self)
        self.head = nn.Linear(32, 10)  # registered before the encoder: not the last nn.Linear
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())


def test_user_registers_the_classifier_before_the_encoder(tiny, caplog):
    with caplog.at_level(logging.INFO), pytest.raises(ValueError, match="head") as info:
        _fit(ClassifierRegisteredFirst(), tiny)
    assert "'body.3'" in caplog.text  # the chosen layer is logged
    message = str(info.value)
    for candidate in ("'body.1'", "'body.3'", "'head'"):
        assert candidate in message
    assert "head='head'" in message  # the layer the loss was computed from is suggested
    # naming the classifier fixes it
    dm, _ = _fit(ClassifierRegisteredFirst(), tiny, callbacks=[TEDPruningCallback(head="head")])
    assert torch.isfinite(dm.state.score).all()


# ----------------------------------------------------------------------------- case 9
class SequenceModel(L.LightningModule):
    """Token embedding, one tanh layer and a linear head over the vocabulary; ``time_first`` runs the
    layers on ``(T, B, d)`` tensors (as ``nn.Transformer`` and ``nn.LSTM`` do by default)."""

    def __init__(self, time_first: bool, vocab: int = 11, d: int = 8) -> None:
        super().__init__()
        self.time_first = time_first
        self.embed = nn.Embedding(vocab, d)
        self.body = nn.Sequential(nn.Linear(d, d), nn.Tanh())
        self.head = nn.Linear(d, vocab)

    def training_step(self, batch, batch_idx):
        (tokens,) = batch  # (B, T)
        x = self.embed(tokens.T if self.time_first else tokens)
        logits = self.head(self.body(x))
        if self.time_first:
            logits = logits.transpose(0, 1)
        return pruned_loss(self, sequence_loss(logits, tokens))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_user_runs_a_sequence_first_head_whose_length_equals_the_batch_size():
    tokens = torch.randint(0, 11, (64, 16), generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(tokens)
    with pytest.raises(ValueError, match=r"batch first.*\(T, B") as info:
        _fit(SequenceModel(time_first=True), data, batch_size=16)  # T == B == 16
    assert "transpose" in str(info.value)
    # the same model batch first, with the same ambiguous shapes, trains and scores every sample
    dm, _ = _fit(SequenceModel(time_first=False), data, batch_size=16)
    assert torch.isfinite(dm.state.score).all()


# ----------------------------------------------------------------------------- case 11
class SkipsEverySecondBatch(ImageClassifier):
    """Returns None (Lightning's way to skip a batch) for every odd batch and every batch of epoch 1, and
    notes what it trained."""

    def __init__(self) -> None:
        super().__init__(one_cycle=False)
        self.trained: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        if batch_idx % 2 == 1 or self.current_epoch == 1:
            return None
        self.trained.append(self.trainer.datamodule.batch_context.index.clone())
        return super().training_step(batch, batch_idx)


def test_user_returns_none_from_training_step_to_skip_a_batch(tiny):
    model = SkipsEverySecondBatch()
    dm, trainer = _fit(model, tiny, epochs=3)
    assert trainer.current_epoch == 3  # every epoch ran to its end
    counts = torch.bincount(torch.cat(model.trained), minlength=len(tiny)).to(dm.state.seen.dtype)
    assert torch.equal(dm.state.seen, counts)  # skipped samples were not scored
    assert (counts == 0).any() and (counts > 0).any()
    assert torch.isinf(dm.state.score[counts == 0]).all() and torch.isfinite(dm.state.score[counts > 0]).all()


# ----------------------------------------------------------------------------- case 15
class StepSchedule(ImageClassifier):
    """A per-step LR schedule whose length comes from ``steps(trainer)``, as transformer fine-tuning does."""

    def __init__(self, kind: str, sized_by: str, interval: str = "step") -> None:
        super().__init__(one_cycle=False)
        self.kind, self.sized_by, self.interval = kind, sized_by, interval

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05)
        if self.sized_by == "lightning":
            total = int(self.trainer.estimated_stepping_batches)
        else:
            total = self.trainer.datamodule.total_optimizer_steps()
        self.sized = total
        if self.kind == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=total)
        elif self.kind == "lambda":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / total))
        else:
            transformers = pytest.importorskip("transformers")
            sched = transformers.get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.interval}}


@pytest.mark.parametrize("kind", ["onecycle", "lambda", "huggingface_linear"])
def test_user_sizes_a_step_lr_schedule_with_estimated_stepping_batches(tiny, kind):
    model = StepSchedule(kind, sized_by="lightning")
    with pytest.warns(UserWarning, match=r"lightning_ted.total_optimizer_steps\(self.trainer\)") as record:
        dm, trainer = _fit(model, tiny, epochs=4)
    message = next(str(w.message) for w in record if "total_optimizer_steps" in str(w.message))
    taken = dm.total_optimizer_steps()
    assert trainer.global_step == taken < model.sized == 4 * 4  # sized from four full-data epochs
    assert f"sized for {model.sized} " in message and f"takes {taken} " in message
    # sized with the datamodule's count, or stepped per epoch: no warning
    for model in (StepSchedule(kind, sized_by="datamodule"), StepSchedule(kind, "lightning", interval="epoch")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _fit(model, tiny, epochs=4)
        assert not [w for w in caught if "total_optimizer_steps" in str(w.message)]


# ----------------------------------------------------------------------------- issue 17
class LoadedInEvalMode(ImageClassifier):
    """What ``from_pretrained`` hands back: a model in eval mode, which the user never switches to train."""

    def __init__(self) -> None:
        super().__init__(one_cycle=False)
        self.model.eval()


def test_user_trains_a_model_left_in_eval_mode(tiny):
    with pytest.warns(UserWarning, match=r"eval mode.*\.train\(\)"):
        dm, _ = _fit(LoadedInEvalMode(), tiny)
    assert torch.isfinite(dm.state.score).all()  # every sample was scored all the same


@pytest.mark.parametrize("method", ["infobatch", "seta"])
def test_user_sizes_a_step_lr_schedule_with_estimated_stepping_batches_under_a_loss_dependent_method(tiny, method):
    """InfoBatch and SeTa keep a loss-dependent count: no exact step count exists, so the warning says so and
    points to an epoch-based schedule; an epoch-interval schedule is not warned about."""
    model = StepSchedule("onecycle", sized_by="lightning")
    with pytest.warns(UserWarning, match=r"loss-dependent number of samples") as record:
        dm, trainer = _fit(model, tiny, epochs=4, method=method)
    message = next(str(w.message) for w in record if "loss-dependent" in str(w.message))
    assert f"sized for {model.sized} " in message and "interval='epoch'" in message and repr(method) in message
    assert trainer.global_step <= model.sized  # never more steps than full data; fewer whenever a batch is pruned
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(StepSchedule("onecycle", "lightning", interval="epoch"), tiny, epochs=4, method=method)
    assert not [w for w in caught if "loss-dependent" in str(w.message)]
