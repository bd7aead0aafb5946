"""Resume from any checkpoint reproduces the uninterrupted run, for every method, schedule and loader path.

Every schedule here keeps all data in epoch 0, prunes epochs 1 and 2 and trains the anneal epoch 3 on all
data again, so epochs change length and a shorter epoch (2) is followed by a longer one (3). A checkpoint
written at an epoch's last batch restores Lightning's batch count of that epoch, which Lightning compares
with the length of the next epoch's loader: a longer next epoch once trained only its remainder.

One uninterrupted run per case writes checkpoints from ``trainer.save_checkpoint`` (after the first, a
middle and the last batch of epoch 2, and at its end from a callback listed before and after
``TEDPruningCallback``) and from ``ModelCheckpoint(every_n_train_steps=1)``, whose checkpoint at the last
step of every epoch is resumed (the run's last one too: that fit trains nothing and must still fold its
epoch in). With ``val_check_interval < 1`` a ``ModelCheckpoint`` writes at validation ends, one right after
an epoch's last batch, from which Lightning resumes that epoch without a batch and reruns its end hooks.
The map-style, device-resident and streamed (litdata) loaders are covered.

Each checkpoint is resumed on a fresh model (other seed) and must train exactly the rest of the
uninterrupted run (the same batches in the same order with the same weights, see :class:`Trail`), see the
same selection at every epoch end, and end with the same kept history, visit counts, scores, steps and
parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from test_pruned_reference import MLP

from lightning_ted import (
    ConstantSchedule,
    DynamicPruningDataModule,
    LinearSchedule,
    RollerCoasterSchedule,
    TEDPruningCallback,
)
from lightning_ted.methods import METHODS

N, BATCH, EPOCHS, SAVE_EPOCH = 256, 32, 4, 2  # 8 batches a full epoch; epoch 2 prunes, epoch 3 trains all data
SCHEDULES = {
    "constant": lambda: ConstantSchedule(ratio=0.5),
    "rollercoaster": lambda: RollerCoasterSchedule(ratio=0.5, beta=0.5),
    "linear": lambda: LinearSchedule(ratio=0.5),
}
METHOD_OPTIONS = {"cat": {"score_epochs": 2}}  # CAT's default scores on all data for 3 epochs: prune epoch 2 here
# every method under one schedule; every schedule under TED and the two methods whose kept count depends on
# the scores (their pruned epochs differ in length even under ConstantSchedule); the device-resident loader
CASES = [("constant", method, False) for method in sorted(METHODS)]
CASES += [(s, m, False) for s in ("rollercoaster", "linear") for m in ("infobatch", "seta", "ted")]
CASES += [("linear", "infobatch", True), ("constant", "ted", True)]
PLACES = ("first_batch", "middle_batch", "last_batch", "epoch_end_before", "epoch_end_after")


class Trail(Callback):
    """Every training batch as ``(epoch, indices, weights)`` in the order trained, each epoch's kept set, and the
    selection the epoch's end hooks see (the pruning metrics of the epoch are logged from it)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.kept: dict[int, torch.Tensor] = {}
        self.ended: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # not on_train_epoch_start: Lightning skips that hook when it resumes in the middle of an epoch
        epoch, dm = trainer.current_epoch, trainer.datamodule
        self.kept.setdefault(epoch, dm.current_selection.indices.clone())
        self.batches.append((epoch, dm.batch_context.index.clone(), dm.batch_context.weight.clone()))

    def on_train_epoch_end(self, trainer, pl_module):
        self.ended[trainer.current_epoch] = trainer.datamodule.trained_selection.indices.clone()


class SaveAt(Callback):
    """Writes ``<place>.ckpt`` with ``trainer.save_checkpoint`` after the first, a middle and the last batch of
    ``SAVE_EPOCH`` (``batches=True``) and at its end (``epoch_end_<suffix>.ckpt``)."""

    def __init__(self, folder: Path, suffix: str, batches: bool) -> None:
        self.folder, self.suffix, self.batches = folder, suffix, batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.batches and trainer.current_epoch == SAVE_EPOCH:
            last = trainer.num_training_batches - 1
            for place, idx in {"first": 0, "middle": last // 2, "last": last}.items():
                if batch_idx == idx:
                    trainer.save_checkpoint(self.folder / f"{place}_batch.ckpt")

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == SAVE_EPOCH:
            trainer.save_checkpoint(self.folder / f"epoch_end_{self.suffix}.ckpt")


class ValMLP(MLP):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)


def _run(case, train, seed, *, before=(), after=(), ckpt_path=None, model=MLP, val=None, **trainer_kwargs):
    """Fit ``model`` on ``train`` (a dataset, or a callable that builds one per fit) under ``case``:
    (schedule, method, device_resident). Returns (model, datamodule, trail, trainer)."""
    schedule, method, device_resident = case
    L.seed_everything(seed, verbose=False)
    net = model(lr=0.05)
    dm = DynamicPruningDataModule(
        train() if callable(train) else train,
        method=METHODS[method](**METHOD_OPTIONS.get(method, {})),
        schedule=SCHEDULES[schedule](),
        val_dataset=val,
        batch_size=BATCH,
        device_resident=device_resident,
    )
    trail = Trail()
    callbacks = [*before, TEDPruningCallback(progress_bar=False, summary=False), trail, *after]
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer = make_trainer(EPOCHS, callbacks=callbacks, enable_checkpointing=checkpointing, **trainer_kwargs)
    trainer.fit(net, datamodule=dm, ckpt_path=ckpt_path)
    return net, dm, trail, trainer


def assert_resumed_like(full, resumed, ckpt: Path, where: str) -> None:
    """``resumed`` (from ``ckpt``) trained exactly the batches ``full`` trained after it and ends in its state."""
    (full_model, full_dm, full_trail, full_trainer), (model, dm, trail, trainer) = full, resumed
    done = torch.load(ckpt, weights_only=False)["global_step"]  # one optimizer step per batch
    rest = full_trail.batches[done:]
    assert [(e, i.numel()) for e, i, _ in trail.batches] == [(e, i.numel()) for e, i, _ in rest], where
    for (epoch, index, weight), (_, full_index, full_weight) in zip(trail.batches, rest, strict=True):
        assert torch.equal(index, full_index) and torch.equal(weight, full_weight), (where, epoch)
    for epoch, kept in trail.kept.items():
        assert torch.equal(kept, full_trail.kept[epoch]), (where, epoch)
    for epoch, ended in trail.ended.items():
        assert torch.equal(ended, full_trail.ended[epoch]), (where, "the end of epoch", epoch)
    assert trainer.global_step == full_trainer.global_step, where
    assert torch.equal(dm.kept_history, full_dm.kept_history), (where, dm.kept_history, full_dm.kept_history)
    assert torch.equal(dm.state.seen, full_dm.state.seen), where
    assert torch.equal(dm.state.last_epoch, full_dm.state.last_epoch), where
    torch.testing.assert_close(dm.state.score, full_dm.state.score, rtol=0, atol=0, equal_nan=True, msg=where)
    ig, full_ig = dm.generalization, full_dm.generalization  # the ig/* readings survive resume too
    torch.testing.assert_close(ig.last_loss, full_ig.last_loss, rtol=0, atol=0, equal_nan=True, msg=where)
    torch.testing.assert_close(ig.sums, full_ig.sums, rtol=0, atol=1e-12, msg=where)
    torch.testing.assert_close(ig.class_sums, full_ig.class_sums, rtol=0, atol=1e-12, msg=where)  # per class too
    for a, b in zip(full_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b), where


def epoch_end_steps(trail: Trail) -> dict[int, int]:
    """The global step after each epoch's last batch."""
    return {epoch: step for step, (epoch, _, _) in enumerate(trail.batches, start=1)}


def check_resume_from_every_place(case, train: Any, folder: Path, **run_kwargs) -> None:
    """One uninterrupted run writes checkpoints at every place (module docstring); each resumes exactly."""
    steps = ModelCheckpoint(dirpath=folder / "steps", filename="{step}", every_n_train_steps=1, save_top_k=-1)
    before = SaveAt(folder, "before", batches=False)
    full = _run(case, train, 0, before=[before], after=[SaveAt(folder, "after", batches=True), steps], **run_kwargs)
    history = full[1].kept_history.tolist()
    assert history[SAVE_EPOCH] < history[SAVE_EPOCH + 1] or case[1] == "full", history  # a longer epoch follows
    ckpts = {place: folder / f"{place}.ckpt" for place in PLACES}
    for epoch, step in epoch_end_steps(full[2]).items():
        ckpts[f"ModelCheckpoint at the end of epoch {epoch}"] = folder / "steps" / f"step={step}.ckpt"
    for place, ckpt in ckpts.items():
        assert ckpt.exists(), place
        resumed = _run(case, train, 123, ckpt_path=ckpt, **run_kwargs)
        assert_resumed_like(full, resumed, ckpt, f"{case} resumed from {place}")


@pytest.fixture(scope="module")
def train(mnist_train):
    return subset(mnist_train, N)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}" + ("-device" if c[2] else ""))
def test_resume_from_any_checkpoint_matches_the_uninterrupted_run(case, train, tmp_path):
    check_resume_from_every_place(case, train, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["infobatch", "seta", "ted"])
def test_resume_from_a_validation_end_checkpoint_matches_the_uninterrupted_run(method, train, mnist_test, tmp_path):
    """``val_check_interval=0.125``: a validation after every batch (epochs have at most 8), each followed by a
    checkpoint; those right after every epoch's last batch and after the first batch of ``SAVE_EPOCH`` are resumed.
    Lightning resumes the former in their epoch and reruns its end, which must see the epoch's own selection
    and train nothing more."""
    case, val, interval = ("constant", method, False), subset(mnist_test, 64), 0.125
    saver = ModelCheckpoint(dirpath=tmp_path, filename="{step}", save_top_k=-1, every_n_epochs=1)
    full = _run(case, train, 0, after=[saver], model=ValMLP, val=val, val_check_interval=interval)
    ends = epoch_end_steps(full[2])
    for step in sorted({*ends.values(), ends[SAVE_EPOCH - 1] + 1}):
        ckpt = tmp_path / f"step={step}.ckpt"
        assert ckpt.exists(), step
        resumed = _run(case, train, 123, ckpt_path=ckpt, model=ValMLP, val=val, val_check_interval=interval)
        assert_resumed_like(full, resumed, ckpt, f"{method} resumed from the validation end at step {step}")


@pytest.fixture(scope="module")
def streamed(tmp_path_factory) -> Callable[[], Any]:
    """A fresh litdata ``StreamingDataset`` per fit over a small optimized set (see ``stream_helpers``)."""
    litdata = pytest.importorskip("litdata")
    from stream_helpers import optimize_dataset

    path = optimize_dataset(tmp_path_factory.mktemp("litdata") / "train")
    return lambda: litdata.StreamingDataset(str(path), shuffle=True, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("method", ["infobatch", "ted"])
def test_streamed_resume_from_any_checkpoint_matches_the_uninterrupted_run(schedule, method, streamed, tmp_path):
    from stream_helpers import TinyNet

    check_resume_from_every_place((schedule, method, None), streamed, tmp_path, model=TinyNet, deterministic=False)


@pytest.mark.slow
def test_user_resumes_a_checkpoint_without_the_epoch_record_is_warned(train, tmp_path):
    """A mid-epoch checkpoint whose datamodule state lacks the epoch's record (an older lightning-ted wrote it)
    cannot continue the epoch exactly: the resumed run says so instead of silently redrawing it."""
    case = ("constant", "ted", False)
    _run(case, train, 0, after=[SaveAt(tmp_path, "after", batches=True)])
    ckpt = torch.load(tmp_path / "middle_batch.ckpt", weights_only=False)
    del ckpt[DynamicPruningDataModule.__qualname__]["epoch_in_progress"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.warns(UserWarning, match="holds no record of the epoch's selection"):
        _run(case, train, 123, ckpt_path=tmp_path / "old.ckpt")
