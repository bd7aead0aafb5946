"""No device-to-host sync on the step path.

CPU: every step-path function of the package (the callback's batch hooks, ``pruned_loss`` inside
``training_step``, the head-capture hooks, the batch-context gradient hook, the datamodule's batch-transfer
hooks and the device-resident loader's batch gather) runs under a torch-function mode that fails on the
calls that would wait for the device on an accelerator: ``.item()``, ``.tolist()``, ``.cpu()``/``.numpy()``,
``bool()/int()/float()`` of a tensor (so a Python ``if`` on one), ``nonzero``/``masked_select``/``unique``,
boolean-mask indexing, printing a tensor. A ``.to("cpu")`` cannot be told from a no-op ``.to`` on a CPU run;
the CUDA test below catches it (and everything else) with ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback
from torch.overrides import TorchFunctionMode

from lightning_ted import EL2N, TED, ConstantSchedule, DynamicPruningDataModule, Forgetting, TEDPruningCallback
from lightning_ted.adapters.step_checks import FirstStepChecks
from lightning_ted.core.batch import BatchContext
from lightning_ted.core.state import ScoreState
from lightning_ted.data.device_loader import DeviceResidentLoader
from lightning_ted.methods.taylor import HeadCapture, _HeadCall
from lightning_ted.research import TEDVariant
from lightning_ted.zoo.demo import ImageClassifier

_SYNCING = {
    "item", "tolist", "cpu", "numpy", "__array__", "__bool__", "__int__", "__float__", "__index__", "__complex__",
    "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount", "equal", "allclose",
    "__repr__", "__str__", "__format__",
}  # fmt: skip


class HostSync(AssertionError):
    """A call on the step path that forces a device-to-host copy on an accelerator."""


def _has_bool_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class ForbidHostSync(TorchFunctionMode):
    """Fails on every torch call that waits for the device; ``found`` keeps them even if an exception is caught."""

    found: list[str] = []
    exempt = 0  # > 0 inside the one-time first-step checks (FirstStepChecks), which may sync once per fit

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if ForbidHostSync.exempt:
            return func(*args, **(kwargs or {}))
        syncing = name in _SYNCING
        syncing |= name == "where" and len(args) + len(kwargs or {}) == 1  # torch.where(cond) is nonzero
        syncing |= name == "repeat_interleave" and isinstance(args[1] if len(args) > 1 else None, torch.Tensor)
        syncing |= name in ("__getitem__", "__setitem__") and _has_bool_index(args[1])
        if syncing:
            ForbidHostSync.found.append(name)
            raise HostSync(f"torch call {name!r} on the training step path forces a device-to-host sync")
        return func(*args, **(kwargs or {}))


def _guarded(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with ForbidHostSync():
            return fn(*args, **kwargs)

    return wrapper


def _first_step_only(fn):
    """Lets a ``FirstStepChecks`` hook sync while its checks have not run yet (once per fit), never after."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        first = not self.done
        ForbidHostSync.exempt += first
        try:
            return fn(self, *args, **kwargs)
        finally:
            ForbidHostSync.exempt -= first

    return wrapper


def _guarded_iter(fn):
    @functools.wraps(fn)
    def wrapper(self):
        it = fn(self)
        while True:
            with ForbidHostSync():
                try:
                    batch = next(it)
                except StopIteration:
                    return
            yield batch

    return wrapper


STEP_PATH = [
    (TEDPruningCallback, "on_train_batch_start"),
    (TEDPruningCallback, "on_before_backward"),
    (TEDPruningCallback, "on_train_batch_end"),
    (DynamicPruningDataModule, "on_before_batch_transfer"),
    (DynamicPruningDataModule, "on_after_batch_transfer"),
    (HeadCapture, "_on_forward"),
    (_HeadCall, "on_grad"),
    (HeadCapture, "call_deltas"),
    (BatchContext, "capture_loss_grad"),
    (ImageClassifier, "training_step"),  # the model and pruned_loss
]


@pytest.fixture
def guard(monkeypatch):
    """Installs the mode around every step-path function for one test."""
    for owner, name in STEP_PATH:
        monkeypatch.setattr(owner, name, _guarded(getattr(owner, name)))
    monkeypatch.setattr(DeviceResidentLoader, "__iter__", _guarded_iter(DeviceResidentLoader.__iter__))
    for name in ("on_step_start", "before_backward", "on_step_end"):
        monkeypatch.setattr(FirstStepChecks, name, _first_step_only(getattr(FirstStepChecks, name)))
    ForbidHostSync.found = []
    yield ForbidHostSync.found


class TensorLR(ImageClassifier):
    """Plain SGD with the learning rate held as a tensor (as capturable / compiled optimizers do)."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=torch.tensor(0.05), momentum=0.9)


def _fit(train, method, resident, module=ImageClassifier, accelerator="cpu", extra=(), epochs=2):
    L.seed_everything(0, verbose=False)
    model = module(lr=0.05, one_cycle=False)
    dm = DynamicPruningDataModule(
        train, method=method, schedule=ConstantSchedule(0.5), batch_size=64, device_resident=resident
    )
    trainer = make_trainer(epochs, callbacks=[*extra, TEDPruningCallback()], accelerator=accelerator)
    trainer.fit(model, datamodule=dm)
    return dm


METHODS = {
    "ted-batch": lambda: TED(),
    "ted-ema-ratio": lambda: TEDVariant(reference="ema", score="ratio"),
    "ted-all-cosine": lambda: TEDVariant(reference="all", score="cosine", reference_size=128),
    "ted-pruned-cross": lambda: TEDVariant(reference="pruned", score="cross", reference_size=128),
    "el2n": lambda: EL2N(),
    "forgetting": lambda: Forgetting(),
}


@pytest.mark.slow
@pytest.mark.parametrize("resident", [False, True], ids=["standard", "device"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_step_path_makes_no_host_sync(mnist_train, guard, method, resident):
    dm = _fit(subset(mnist_train, 320), METHODS[method](), resident)
    assert guard == []
    assert dm.kept_history[0] == 320 and bool(dm.state.seen.gt(0).all())
    if method.startswith("ted"):
        assert dm.kept_history[1] == 160  # the second epoch's steps ran on a pruned set


@pytest.mark.slow
def test_a_tensor_learning_rate_is_not_read_back_to_the_host(mnist_train, guard):
    _fit(subset(mnist_train, 192), TED(), resident=True, module=TensorLR, epochs=1)
    assert guard == []


@pytest.mark.parametrize(
    ("inject", "caught"),
    [
        (lambda losses: losses.sum().item(), "item"),
        (lambda losses: 1 if losses.max() > 0 else 0, "__bool__"),
        (lambda losses: int(losses.argmax()), "__int__"),
        (lambda losses: losses[losses > 1.0], "__getitem__"),
        (lambda losses: losses.nonzero(), "nonzero"),
        (lambda losses: losses.cpu(), "cpu"),
    ],
    ids=["item", "if", "int", "mask", "nonzero", "cpu"],
)
def test_the_guard_catches_a_sync_slipped_into_the_step_path(mnist_train, guard, monkeypatch, inject, caught):
    observe = ScoreState.observe

    def syncing_observe(self, indices, losses, terms):
        inject(losses)
        observe(self, indices, losses, terms)

    monkeypatch.setattr(ScoreState, "observe", syncing_observe)
    with pytest.raises(HostSync, match=caught):
        _fit(subset(mnist_train, 64), TED(), resident=True, epochs=1)
    assert guard[:1] == [caught]


class SyncDebug(Callback):
    """``torch.cuda.set_sync_debug_mode("error")`` from the first training step to the epoch's end: covers
    the batch fetch and transfer, every callback's step hooks, forward, backward and the optimizer step.
    Listed first, so its epoch-end hook turns the mode off before the pruning callback's epoch-end update."""

    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module):
        torch.cuda.set_sync_debug_mode("default")

    def on_exception(self, trainer, pl_module, exception):
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("resident", [False, True], ids=["standard", "device"])
@pytest.mark.parametrize("method", ["ted-batch", "ted-all-cosine", "el2n"])
def test_cuda_steps_make_no_host_sync(mnist_train, method, resident):
    train = subset(mnist_train, 640)
    if resident:
        train = torch.utils.data.TensorDataset(*(t.cuda() for t in train.tensors))  # automatic device path
    debug = SyncDebug()
    dm = _fit(train, METHODS[method](), None, accelerator="cuda", extra=[debug])
    assert debug.steps == 10 + 5
    assert dm.kept_history.tolist() == [640, 320]
