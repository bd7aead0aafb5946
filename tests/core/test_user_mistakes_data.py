"""Catalogue of user mistakes and Trainer options on the data path (issue 15): each test is named for
what the user did and asserts that the run ends correct or stops with a message naming the problem."""

from __future__ import annotations

import logging
import math

import lightning as L
import pytest
import torch
import yaml
from conftest import make_trainer, subset
from lightning.pytorch.callbacks import Callback
from test_end_to_end import EpochRecorder
from test_resume import SaveAt
from torch.utils.data import DataLoader, WeightedRandomSampler

from lightning_ted import TED, ConstantSchedule, DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.core.batch import IndexedSample
from lightning_ted.research import TEDVariant
from lightning_ted.zoo.demo import ImageClassifier


@pytest.fixture(scope="module")
def small(mnist_train):
    return subset(mnist_train, 512)


def _dm(train, batch_size=64, ratio=0.5, method=None, max_epochs=None, **kwargs):
    schedule = RollerCoasterSchedule(ratio=ratio, beta=0.5, max_epochs=max_epochs)
    return DynamicPruningDataModule(train, method=method or TED(), schedule=schedule, batch_size=batch_size, **kwargs)


def _fit(dm, epochs, callbacks=(), ckpt_path=None, model=None, seed=0, **trainer_kwargs):
    L.seed_everything(seed, verbose=False)
    trainer = make_trainer(epochs, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(model or ImageClassifier(one_cycle=False), datamodule=dm, ckpt_path=ckpt_path)
    return trainer


# ---------------------------------------------------------------- 2. mid-epoch resume, changed configuration
@pytest.mark.parametrize("new_batch_size", [32, 128])
def test_user_resumes_mid_epoch_with_another_batch_size(small, tmp_path, new_batch_size):
    ckpt, done = tmp_path / "mid.ckpt", 2  # saved after 2 of epoch 1's batches of 64: 128 samples trained
    full = EpochRecorder()
    full_dm = _dm(small)
    _fit(full_dm, 3, callbacks=[TEDPruningCallback(), full, SaveAt(ckpt, 1, done - 1)])
    trained = torch.cat(full.seen[1][:done])
    resumed = EpochRecorder()
    resumed_dm = _dm(small, batch_size=new_batch_size)
    _fit(resumed_dm, 3, callbacks=[TEDPruningCallback(), resumed], ckpt_path=ckpt, seed=1)
    rest = torch.cat(resumed.seen[1])
    # exactly the untrained samples of the interrupted epoch, in the same order: none twice, none skipped
    assert torch.equal(rest, torch.cat(full.seen[1])[trained.numel() :])
    assert torch.equal(torch.cat([trained, rest]).sort().values, full.kept[1].sort().values)
    assert int(resumed_dm.kept_history[1]) == full.kept[1].numel() == int(full_dm.kept_history[1])
    assert torch.equal(resumed_dm.state.seen, full_dm.state.seen)  # every sample scored as often


@pytest.mark.parametrize("change", [{"epochs": 6}, {"ratio": 0.3}])
def test_user_resumes_mid_epoch_with_another_max_epochs_or_ratio(small, tmp_path, change):
    ckpt = tmp_path / "mid.ckpt"
    full = EpochRecorder()
    _fit(_dm(small), 4, callbacks=[TEDPruningCallback(), full, SaveAt(ckpt, 2, 1)])
    trained = torch.cat(full.seen[2][:2])
    resumed = EpochRecorder()
    dm = _dm(small, ratio=change.get("ratio", 0.5))
    _fit(dm, change.get("epochs", 4), callbacks=[TEDPruningCallback(), resumed], ckpt_path=ckpt, seed=1)
    assert dm.schedule.prune_ratio(2) != pytest.approx(RollerCoasterSchedule(0.5, max_epochs=4).prune_ratio(2))
    # the interrupted epoch is finished as it began; the new setting applies from epoch 3 on
    assert torch.equal(resumed.kept[2], full.kept[2])
    assert torch.equal(torch.cat(resumed.seen[2]), torch.cat(full.seen[2])[trained.numel() :])
    assert int(dm.kept_history[2]) == full.kept[2].numel()
    expected = len(small) - round(dm.schedule.prune_ratio(3) * len(small))
    assert int(dm.kept_history[3]) == resumed.kept[3].numel() == expected


def test_user_resumes_a_per_sample_weighted_epoch_with_another_ratio(small, tmp_path):
    """TED(selection="pps") weighs every kept sample 1/pi: the checkpoint must carry those weights too."""
    ckpt = tmp_path / "mid.ckpt"
    full = EpochRecorder()
    _fit(_dm(small, method=TEDVariant(selection="pps")), 4, callbacks=[TEDPruningCallback(), full, SaveAt(ckpt, 2, 1)])
    resumed = EpochRecorder()
    dm = _dm(small, ratio=0.3, method=TEDVariant(selection="pps"))
    _fit(dm, 4, callbacks=[TEDPruningCallback(), resumed], ckpt_path=ckpt, seed=1)
    done = sum(b.numel() for b in full.seen[2][:2])
    assert torch.cat(full.weights[2]).unique().numel() > 2  # per-sample weights, not one shared weight
    assert torch.equal(torch.cat(resumed.seen[2]), torch.cat(full.seen[2])[done:])
    assert torch.equal(torch.cat(resumed.weights[2]), torch.cat(full.weights[2])[done:])


# ---------------------------------------------------------------- 3. a wrapped DataModule's loader options
class LoaderOptions(L.LightningDataModule):
    def __init__(self, train, **loader_kwargs) -> None:
        super().__init__()
        self.train, self.loader_kwargs = train, loader_kwargs

    def train_dataloader(self):
        return DataLoader(self.train, **self.loader_kwargs)


def _seed_worker(worker_id: int) -> None:
    torch.manual_seed(worker_id)


def test_user_wraps_a_datamodule_whose_loader_sets_workers_drop_last_and_pinning(small):
    options = dict(
        batch_size=50,
        shuffle=True,
        drop_last=True,
        pin_memory=True,
        num_workers=2,
        persistent_workers=True,
        prefetch_factor=3,
        worker_init_fn=_seed_worker,
        timeout=30,
        multiprocessing_context="spawn",
    )
    dm = DynamicPruningDataModule(datamodule=LoaderOptions(small, **options), schedule=ConstantSchedule(max_epochs=2))
    dm.setup("fit")
    loader = dm.train_dataloader()  # not iterated: the options are what matters, no worker is started
    assert loader.batch_size == 50 and loader.num_workers == 2 and loader.drop_last and loader.pin_memory
    assert loader.persistent_workers and loader.prefetch_factor == 3 and loader.worker_init_fn is _seed_worker
    assert loader.timeout == 30 and loader.multiprocessing_context is not None
    assert loader.sampler.shuffle


def test_user_wraps_a_datamodule_with_drop_last_and_an_unshuffled_loader(small):
    dm = DynamicPruningDataModule(
        datamodule=LoaderOptions(small, batch_size=100, shuffle=False, drop_last=True), method=TED()
    )
    rec = EpochRecorder()
    _fit(dm, 2, callbacks=[TEDPruningCallback(), rec])
    assert all(batch.numel() == 100 for epoch in rec.seen.values() for batch in epoch)  # drop_last kept
    first = torch.cat(rec.seen[0])
    assert torch.equal(first, torch.arange(500))  # in index order, as the wrapped loader served them


def test_user_wraps_a_datamodule_with_a_weighted_random_sampler(small):
    sampler = WeightedRandomSampler(torch.ones(len(small)), num_samples=len(small))
    dm = DynamicPruningDataModule(datamodule=LoaderOptions(small, batch_size=64, sampler=sampler))
    with pytest.raises(ValueError, match="sampler=WeightedRandomSampler.*cannot be combined.*multiply each"):
        dm.setup("fit")


def test_user_passes_persistent_workers_and_prefetch_factor(small):
    dm = _dm(small, num_workers=1, persistent_workers=True, prefetch_factor=4, val_dataset=small, max_epochs=2)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        assert loader.persistent_workers and loader.prefetch_factor == 4 and loader.num_workers == 1


# ---------------------------------------------------------------- 4. a schedule that empties an epoch
@pytest.mark.parametrize("ratio, drop_last, kept", [(0.9995, False, 0), (0.9, True, 51)])
def test_user_sets_a_ratio_that_leaves_an_epoch_without_a_batch(small, ratio, drop_last, kept):
    # max_weight=inf lifts the weight bound, which would otherwise keep at least N / max_weight samples
    method = TED(q=1.0, max_weight=math.inf)
    dm = DynamicPruningDataModule(
        small, schedule=ConstantSchedule(ratio=ratio), batch_size=64, drop_last=drop_last, method=method
    )
    rec = EpochRecorder()
    with pytest.raises(ValueError, match=rf"epoch 1 keeps {kept} of 512 samples.*no training batch"):
        _fit(dm, 3, callbacks=[TEDPruningCallback(), rec])
    assert rec.seen == {}  # refused before any training


# ---------------------------------------------------------------- 5. no TEDPruningCallback
def test_user_forgets_the_pruning_callback(small, caplog):
    dm = _dm(small)
    with caplog.at_level(logging.INFO):
        trainer = _fit(dm, 3)
    assert sum(isinstance(cb, TEDPruningCallback) for cb in trainer.callbacks) == 1
    assert "added TEDPruningCallback" in caplog.text
    assert int((dm.state.seen > 0).sum()) == len(small)  # scored
    assert int(dm.kept_history[1]) < len(small)  # and pruned


# ---------------------------------------------------------------- 6. one datamodule reused for a second fit
class StartProbe(Callback):
    def __init__(self, pruning: TEDPruningCallback) -> None:
        self.pruning, self.at_start = pruning, []

    def on_train_start(self, trainer, pl_module):
        dm = trainer.datamodule
        self.at_start.append((bool(torch.isinf(dm.state.score).all()), dm.method.references.ema is None))


def test_user_fits_the_same_datamodule_schedule_and_callback_twice(small):
    dm, pruning = _dm(small, method=TEDVariant(reference="ema")), TEDPruningCallback()
    probe = StartProbe(pruning)
    _fit(dm, 2, callbacks=[pruning, probe])
    assert dm.method.references.ema is not None
    _fit(dm, 3, callbacks=[pruning, probe], seed=1)  # another run length, a new model
    assert probe.at_start == [(True, True), (True, True)]  # both runs start unscored, without a reference
    assert dm.schedule.max_epochs == 3 and dm.kept_history.numel() == 3
    assert int(dm.state.seen.sum()) == int(dm.kept_history.sum())  # only the second run's visits


# ---------------------------------------------------------------- 8. limit_train_batches, overfit_batches
class StepsProbe(Callback):
    def on_fit_start(self, trainer, pl_module):
        self.predicted = trainer.datamodule.total_optimizer_steps()


def test_user_limits_the_train_batches(small):
    dm, probe = _dm(small, batch_size=32), StepsProbe()
    trainer = _fit(dm, 3, callbacks=[TEDPruningCallback(), probe], limit_train_batches=2)
    assert probe.predicted == trainer.global_step == 6
    assert dm.kept_history.tolist() == [64, 64, 64]  # samples loaded, not samples kept
    assert dm.saved_fraction(2) == pytest.approx(1 - 192 / (3 * 512))
    assert trainer.callback_metrics["prune/kept_samples"].item() == 64
    assert int(dm.state.seen.sum()) == 192  # each loaded sample-pass is scored once, and nothing else
    assert int(torch.isinf(dm.state.score).sum()) == len(small) - int((dm.state.seen > 0).sum())  # never loaded


def test_user_overfits_a_few_batches(small, caplog):
    dm, rec = _dm(small, batch_size=32), EpochRecorder()
    with caplog.at_level(logging.INFO):
        _fit(dm, 3, callbacks=[TEDPruningCallback(), rec], overfit_batches=2)
    for epoch in range(3):  # the same two batches, unpruned, every epoch
        assert torch.equal(torch.cat(rec.seen[epoch]), torch.arange(64))
        assert torch.cat(rec.weights[epoch]).eq(1).all()
    assert dm.kept_history.tolist() == [64, 64, 64]
    assert torch.equal(dm.state.seen[:64], torch.full((64,), 3, dtype=torch.int32))
    assert "prunes nothing while overfitting" in caplog.text


# ---------------------------------------------------------------- 10. the model's own batch hooks
class HookedModel(ImageClassifier):
    """Overrides all three batch-transfer hooks and records what they receive."""

    def __init__(self) -> None:
        super().__init__(one_cycle=False)
        self.received: dict[str, list] = {"before": [], "transfer": [], "after": []}

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.received["before"].append(batch)
        return batch

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        self.received["transfer"].append(batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.received["after"].append(batch)
        x, y = batch
        return [x, y]


def test_user_model_has_its_own_batch_transfer_hooks(small):
    model, rec = HookedModel(), EpochRecorder()
    dm = _dm(small, val_dataset=subset(small, 128))
    _fit(dm, 2, callbacks=[TEDPruningCallback(), rec], model=model, limit_val_batches=1.0)
    train_batches = sum(len(v) for v in rec.seen.values())
    for name, batches in model.received.items():
        assert len(batches) == train_batches + 2 * 2, name  # plus two val batches of 64 per epoch
        assert not any(isinstance(b, IndexedSample) for b in batches), name
        assert all(isinstance(b, (list, tuple)) and len(b) == 2 for b in batches), name


# ---------------------------------------------------------------- 12. a wrapped DataModule without validation
def test_user_wraps_a_datamodule_without_val_dataloader(small):
    dm = DynamicPruningDataModule(datamodule=LoaderOptions(small, batch_size=64, shuffle=True), method=TED())
    trainer = _fit(dm, 2, limit_val_batches=1.0)  # ImageClassifier has a validation_step
    assert trainer.current_epoch == 2 and "val_acc" not in trainer.callback_metrics
    assert int(dm.kept_history[1]) < len(small)


# ---------------------------------------------------------------- 13. val_check_interval beyond a pruned epoch
def test_user_sets_an_integer_val_check_interval_beyond_a_pruned_epoch(small):
    dm, rec = _dm(small, val_dataset=subset(small, 64)), EpochRecorder()
    with pytest.raises(ValueError, match=r"val_check_interval=6\) is larger than the 4 training batches of epoch 2"):
        _fit(dm, 4, callbacks=[TEDPruningCallback(), rec], val_check_interval=6, limit_val_batches=1.0)
    assert rec.seen == {}  # at setup, before the first batch


# ---------------------------------------------------------------- 14. a typo in a LightningCLI config
def test_user_misspells_a_key_in_the_cli_config(tmp_path, capsys):
    from pathlib import Path

    from lightning_ted.cli import run_cli

    configs = Path(__file__).resolve().parents[2] / "experiments" / "configs"
    cfg = yaml.safe_load((configs / "mnist.yaml").read_text())
    cfg["data"]["init_args"]["schedule"]["init_args"]["rato"] = 0.3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit):
        run_cli(["fit", f"--config={bad}"])
    err = capsys.readouterr().err
    assert "'data.init_args.schedule.init_args.rato'" in err.splitlines()[0]
    assert "Option 'rato' is not accepted" in err  # jsonargparse's own message is kept


# ---------------------------------------------------------------- issue 17: short runs keep a full-data anneal
def test_user_runs_four_epochs_and_still_gets_a_full_data_anneal_epoch():
    schedule = RollerCoasterSchedule(ratio=0.5, max_epochs=4)  # round(0.125 * 4) = 0
    assert schedule.anneal_epochs == 1 and schedule.prune_ratio(3) == 0.0
    assert schedule.prune_ratio(1) > 0 and schedule.prune_ratio(2) == pytest.approx(0.5)
    # three epochs with one warm-up: an anneal epoch would leave one pruning epoch; pruning keeps both
    assert RollerCoasterSchedule(ratio=0.5, max_epochs=3).anneal_epochs == 0
    assert RollerCoasterSchedule(ratio=0.5, anneal=0.0, max_epochs=4).anneal_epochs == 0
