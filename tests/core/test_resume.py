"""Mid-epoch resume details: the loader state, the pruned-set reference, the datamodule state round trip.

Resume from every position of an epoch, for every method, is tested in test_resume_every_position.py.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from test_end_to_end import EpochRecorder

from lightning_ted import TED, DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.research import TEDVariant
from lightning_ted.zoo.demo import ImageClassifier


class SaveAt(Callback):
    """Saves a checkpoint at the end of ``epoch`` (``batch="end"``) or after its training batch ``batch``
    (``"last"``: its last one).

    Listed after the pruning callback, it saves what an interrupted job's last checkpoint would hold;
    the run itself goes on, so it is also the uninterrupted reference.
    """

    def __init__(self, path, epoch: int, batch: int | str) -> None:
        self.path, self.epoch, self.batch = path, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        batch_at = trainer.num_training_batches - 1 if self.batch == "last" else self.batch
        if trainer.current_epoch == self.epoch and batch_idx == batch_at:
            trainer.save_checkpoint(self.path)

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch and self.batch == "end":
            trainer.save_checkpoint(self.path)


def _run(train, tmp_path, epochs, seed, ckpt_path=None, checkpoint=False, extra=(), method=None):
    L.seed_everything(seed, verbose=False)
    model = ImageClassifier(lr=0.05)
    dm = DynamicPruningDataModule(
        train, method=method or TED(), schedule=RollerCoasterSchedule(ratio=0.5, beta=0.5), batch_size=64, seed=0
    )
    rec = EpochRecorder()
    callbacks = [TEDPruningCallback(), rec, *extra]
    if checkpoint:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}"))
    trainer = make_trainer(epochs, callbacks=callbacks, enable_checkpointing=checkpoint)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, dm, rec


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["batch", "pruned"])  # "pruned": the checkpoint carries the epoch's reference
def test_resume_mid_epoch_neither_repeats_nor_skips_samples(mnist_train, tmp_path, recwarn, reference):
    train, mid_batch = subset(mnist_train, 3000), 7
    ckpt = tmp_path / "mid.ckpt"
    method = lambda: TEDVariant(reference=reference, reference_size=256)  # noqa: E731
    full_model, full_dm, full_rec = _run(
        train, tmp_path, epochs=4, seed=0, extra=[SaveAt(ckpt, 2, mid_batch)], method=method()
    )
    saved = torch.load(ckpt, weights_only=True)
    loader_state = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": 2, "batches": mid_batch + 1}]  # batches trained, not prefetched
    assert saved["DynamicPruningDataModule"]["state"]["pending"].shape[0] == (mid_batch + 1) * 64

    resumed_model, resumed_dm, resumed_rec = _run(train, tmp_path, epochs=4, seed=123, ckpt_path=ckpt, method=method())
    assert not [w for w in recwarn if "not resumable" in str(w.message)]
    # epoch 2 continues with the first batch the interrupted run had not trained on
    assert torch.equal(torch.cat(resumed_rec.seen[2]), torch.cat(full_rec.seen[2][mid_batch + 1 :]))
    assert torch.equal(torch.cat(resumed_rec.weights[2]), torch.cat(full_rec.weights[2][mid_batch + 1 :]))
    assert torch.equal(torch.cat(resumed_rec.seen[3]), torch.cat(full_rec.seen[3]))
    assert torch.equal(resumed_rec.kept[3], full_rec.kept[3])
    for a, b in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(resumed_dm.state.score, full_dm.state.score)
    assert torch.equal(resumed_dm.state.seen, full_dm.state.seen)
    assert torch.equal(resumed_dm.kept_history, full_dm.kept_history)


def test_loader_state_from_another_epoch_is_refused(mnist_train):
    dm = DynamicPruningDataModule(subset(mnist_train, 200), schedule=RollerCoasterSchedule(max_epochs=3), batch_size=16)
    dm.setup("fit")
    loader = dm.train_dataloader()
    with pytest.raises(RuntimeError, match="stopped in epoch 1 but Lightning resumes epoch 0"):
        loader.load_state_dict({"epoch": 1, "batches": 3})
    with pytest.warns(UserWarning, match="holds no record of the epoch's selection"):  # no datamodule record
        loader.load_state_dict({"epoch": 0, "batches": 3})
    first = next(iter(loader))
    assert torch.equal(first.index, torch.tensor(list(loader.sampler))[:16])
    assert len(list(loader)) == len(loader) - 3  # the 3 trained batches are not served again


def test_datamodule_state_dict_round_trip(mnist_train):
    train = subset(mnist_train, 500)
    a = DynamicPruningDataModule(
        train, method=TED(), schedule=RollerCoasterSchedule(max_epochs=4), batch_size=32, seed=3
    )
    a.setup("fit")
    a.state.score.copy_(torch.linspace(-1, 1, 500))
    a.state.seen.fill_(2)
    b = DynamicPruningDataModule(train, method=TED(), schedule=RollerCoasterSchedule(max_epochs=4), batch_size=32)
    b.setup("fit")
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.state.score, b.state.score) and torch.equal(a.state.seen, b.state.seen)
    assert b.seed == 3
    assert torch.equal(a.selection_for(3).indices, b.selection_for(3).indices)
