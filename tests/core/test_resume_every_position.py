"""Resume from a checkpoint written anywhere in an epoch reproduces the uninterrupted run, for every method.

One uninterrupted run per method writes a checkpoint after the first, a middle and the last training batch
of an epoch, and at that epoch's end from a callback listed before and after ``TEDPruningCallback``, and
after the last batch of the run (the resumed fit then trains nothing and must still fold that epoch in).
Each checkpoint is resumed on a fresh model (other seed) and must end with the same kept history, visit
counts, scores, trained samples and parameters. The last-batch and early epoch-end checkpoints are the
cases where Lightning does not rerun the interrupted epoch's end hooks on resume.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback
from test_end_to_end import EpochRecorder
from test_pruned_reference import MLP

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.methods import METHODS, build_method

N, BATCH, EPOCHS, SAVE_EPOCH = 320, 32, 4, 1  # 10 batches a full epoch; epoch 1 prunes, so selection matters
PLACES = ("first_batch", "middle_batch", "last_batch", "epoch_end_before", "epoch_end_after", "run_end_batch")


class SaveAfterBatches(Callback):
    """Writes ``<place>_batch.ckpt`` after the first, a middle and the last batch of ``SAVE_EPOCH``."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == SAVE_EPOCH:
            last = trainer.num_training_batches - 1
            for place, idx in {"first": 0, "middle": last // 2, "last": last}.items():
                if batch_idx == idx:
                    trainer.save_checkpoint(self.folder / f"{place}_batch.ckpt")
        if trainer.current_epoch == EPOCHS - 1 and batch_idx == trainer.num_training_batches - 1:
            trainer.save_checkpoint(self.folder / "run_end_batch.ckpt")  # the fit ends on resume: fold at its end


class SaveAtEpochEnd(Callback):
    def __init__(self, path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == SAVE_EPOCH:
            trainer.save_checkpoint(self.path)


def _run(method: str, train, seed: int, callbacks_before=(), callbacks_after=(), ckpt_path=None):
    L.seed_everything(seed, verbose=False)
    model = MLP(lr=0.05)
    dm = DynamicPruningDataModule(
        train, method=build_method(method), schedule=RollerCoasterSchedule(ratio=0.5, beta=0.5), batch_size=BATCH
    )
    rec = EpochRecorder()
    callbacks = [*callbacks_before, TEDPruningCallback(progress_bar=False), rec, *callbacks_after]
    trainer = make_trainer(EPOCHS, callbacks=callbacks)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, dm, rec


@pytest.fixture(scope="module")
def train(mnist_train):
    return subset(mnist_train, N)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_from_a_checkpoint_anywhere_in_an_epoch_matches_the_uninterrupted_run(method, train, tmp_path):
    before = SaveAtEpochEnd(tmp_path / "epoch_end_before.ckpt")
    after = [SaveAfterBatches(tmp_path), SaveAtEpochEnd(tmp_path / "epoch_end_after.ckpt")]
    full_model, full_dm, full_rec = _run(method, train, 0, callbacks_before=[before], callbacks_after=after)
    for place in PLACES:
        ckpt = tmp_path / f"{place}.ckpt"
        assert ckpt.exists(), place
        model, dm, rec = _run(method, train, 123, ckpt_path=ckpt)
        where = f"{method} resumed from {place}"
        assert torch.equal(dm.kept_history, full_dm.kept_history), (where, dm.kept_history, full_dm.kept_history)
        assert torch.equal(dm.state.seen, full_dm.state.seen), where
        torch.testing.assert_close(dm.state.score, full_dm.state.score, rtol=0, atol=0, equal_nan=True, msg=where)
        for epoch in range(SAVE_EPOCH + 1, EPOCHS) if place != "run_end_batch" else ():
            assert torch.equal(rec.kept[epoch], full_rec.kept[epoch]), (where, epoch)
            assert torch.equal(torch.cat(rec.seen[epoch]), torch.cat(full_rec.seen[epoch])), (where, epoch)
            assert torch.equal(torch.cat(rec.weights[epoch]), torch.cat(full_rec.weights[epoch])), (where, epoch)
        for a, b in zip(full_model.parameters(), model.parameters(), strict=True):
            assert torch.equal(a, b), where
