"""Issue 22, item 5: a summary at the end of every pruned fit, printed on rank zero and logged as ``summary/*``."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from user_projects import LinearClassifier
from user_projects import write_tensors as _write

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback, pruned_loss
from lightning_ted.observe.run_history import read_csv_metrics

N, B, EPOCHS = 192, 32, 5


class TrainedSets(Callback):
    """The samples each epoch trains (listed after the pruning callback, so the epoch's set is known)."""

    def __init__(self) -> None:
        self.sets: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.sets.append(trainer.datamodule.trained_selection.indices.clone())


def _fit(tmp_path, summary: bool = True):
    _write(tmp_path, n=N)
    x, y = torch.load(tmp_path / "train.pt")
    dm = DynamicPruningDataModule(torch.utils.data.TensorDataset(x, y), batch_size=B,
                                  schedule=RollerCoasterSchedule(ratio=0.5, beta=0.5, anneal=0.2))  # fmt: skip
    sets = TrainedSets()
    pruning = TEDPruningCallback(summary=summary)
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", callbacks=[pruning, sets],
                        logger=CSVLogger(str(tmp_path / "logs")), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(LinearClassifier(), datamodule=dm)
    return dm, trainer, pruning, sets.sets, y


def test_user_fits_with_pruning_and_reads_what_it_saved_at_the_end(tmp_path, capsys):
    """The printed and logged numbers are the run's: passes saved, steps against full data's, times, speedup
    from the full-data epochs' time per sample, never/always dropped shares overall and per class."""
    dm, trainer, pruning, sets, labels = _fit(tmp_path)
    v = pruning.summary.values
    kept = [len(s) for s in sets]
    assert kept[0] == N and kept[-1] == N and min(kept) < N, "warm-up and anneal on full data, pruned between"
    assert v["summary/saved_sample_passes"] == N * EPOCHS - sum(kept)
    assert v["summary/saved_fraction"] == pytest.approx(1 - sum(kept) / (N * EPOCHS))
    assert v["summary/optimizer_steps"] == trainer.global_step == sum(math.ceil(k / B) for k in kept)
    assert v["summary/full_data_optimizer_steps"] == EPOCHS * math.ceil(N / B)
    assert 0 < v["summary/train_seconds"] < v["summary/wall_seconds"]
    first_epoch = v["summary/full_data_seconds"] - v["summary/full_data_seconds_per_sample"] * N * (EPOCHS - 1)
    assert 0 < first_epoch < v["summary/train_seconds"], "the first epoch as it was, the rest at the anneal's pace"
    assert v["summary/speedup"] == pytest.approx(v["summary/full_data_seconds"] / v["summary/train_seconds"])
    pruned = [s for s in sets if len(s) < N]
    times = torch.zeros(N, dtype=torch.long)
    for s in pruned:
        times[s] += 1
    never, always = times == len(pruned), times == 0
    assert v["summary/pruned_epochs"] == len(pruned)
    assert v["summary/never_dropped"] == pytest.approx(float(never.float().mean()))
    assert v["summary/always_dropped"] == pytest.approx(float(always.float().mean()))
    for c in range(3):
        in_class = labels == c
        assert v[f"summary/never_dropped/class_{c}"] == pytest.approx(float(never[in_class].float().mean()))
        assert v[f"summary/always_dropped/class_{c}"] == pytest.approx(float(always[in_class].float().mean()))
    printed = capsys.readouterr().out
    assert "lightning-ted fit summary" in printed and f"{v['summary/speedup']:.2f}x" in printed
    assert f"sample-passes saved  {N * EPOCHS - sum(kept)} of {N * EPOCHS}" in printed
    assert f"optimizer steps      {trainer.global_step} (full data: {EPOCHS * math.ceil(N / B)})" in printed
    logged = {k: float(val) for r in read_csv_metrics(trainer.logger.log_dir) for k, val in r.items()
              if k.startswith("summary/") and val not in (None, "")}  # fmt: skip
    assert logged["summary/saved_sample_passes"] == v["summary/saved_sample_passes"]
    assert logged["summary/never_dropped/class_2"] == pytest.approx(v["summary/never_dropped/class_2"])


def test_user_turns_the_summary_off(tmp_path, capsys):
    """``TEDPruningCallback(summary=False)`` prints and logs nothing at the end."""
    _, trainer, pruning, _, _ = _fit(tmp_path, summary=False)
    assert pruning.summary is None
    assert "fit summary" not in capsys.readouterr().out
    assert not [k for r in read_csv_metrics(trainer.logger.log_dir) for k in r if k.startswith("summary/")]


def test_a_full_data_run_reads_no_saving_and_a_speedup_of_one(tmp_path):
    """With pruning switched off (``method="full"``) nothing is saved and the estimate is the run itself."""
    _write(tmp_path, n=N)
    x, y = torch.load(tmp_path / "train.pt")
    dm = DynamicPruningDataModule(torch.utils.data.TensorDataset(x, y), method="full", batch_size=B)
    pruning = TEDPruningCallback()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", callbacks=[pruning], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(LinearClassifier(), datamodule=dm)
    v = pruning.summary.values
    assert v["summary/saved_sample_passes"] == 0 and v["summary/pruned_epochs"] == 0
    assert v["summary/optimizer_steps"] == v["summary/full_data_optimizer_steps"] == 3 * math.ceil(N / B)
    assert v["summary/speedup"] == pytest.approx(1.0)


# ---------------------------------------------------------------------- issue 29: resumes, cut epochs, odd setups
COUNTS = ("summary/epochs", "summary/sample_passes", "summary/saved_sample_passes", "summary/saved_fraction",
          "summary/training_batches", "summary/full_data_training_batches", "summary/optimizer_steps",
          "summary/full_data_optimizer_steps", "summary/pruned_epochs", "summary/never_dropped",
          "summary/always_dropped")  # fmt: skip


class SaveAt(Callback):
    """Saves a checkpoint after training batch ``batch`` of ``epoch``, or at its end (``batch="end"``); the run
    goes on, so it is also the uninterrupted reference."""

    def __init__(self, path, epoch: int, batch: int | str) -> None:
        self.path, self.epoch, self.batch = path, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer.save_checkpoint(self.path)

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch and self.batch == "end":
            trainer.save_checkpoint(self.path)


class TrainedBatches(Callback):
    """The samples of every batch the fit trained, per epoch, and the kept count of each epoch it began."""

    def __init__(self) -> None:
        self.batches: dict[int, list[int]] = {}
        self.kept: dict[int, int] = {}
        self.first_step: int | None = None

    def on_train_start(self, trainer, pl_module):
        self.first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches.setdefault(trainer.current_epoch, []).append(int(batch[0].shape[0]))
        self.kept.setdefault(trainer.current_epoch, len(trainer.datamodule.trained_selection))


def _run(tmp_path, *callbacks, summary=True, ckpt_path=None, model=None, method="ted", labels=None, **trainer_kw):
    _write(tmp_path, n=N)
    x, y = torch.load(tmp_path / "train.pt")
    L.seed_everything(0, verbose=False)
    schedule = RollerCoasterSchedule(ratio=0.5, beta=0.5, anneal=0.2)
    train = torch.utils.data.TensorDataset(x, y if labels is None else labels)
    dm = DynamicPruningDataModule(train, batch_size=B, method=method, schedule=schedule)
    pruning = TEDPruningCallback(summary=summary)
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", callbacks=[pruning, *callbacks], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        **trainer_kw)  # fmt: skip
    trainer.fit(model or LinearClassifier(), datamodule=dm, ckpt_path=ckpt_path)
    return pruning, trainer


def _check_resumed_run_counts_the_whole_run(tmp_path, capsys, epoch, batch):
    ckpt = tmp_path / "run.ckpt"
    full, full_trainer = _run(tmp_path, SaveAt(ckpt, epoch, batch))
    capsys.readouterr()
    resumed, trainer = _run(tmp_path, ckpt_path=ckpt)
    assert trainer.global_step == full_trainer.global_step
    for key in COUNTS:
        assert resumed.summary.values[key] == pytest.approx(full.summary.values[key]), key
    for key in full.summary.values:
        if "/class_" in key:
            assert resumed.summary.values[key] == pytest.approx(full.summary.values[key]), key
    assert resumed.summary.values["summary/whole_run"] == 1.0
    printed = capsys.readouterr().out
    assert (
        f"epochs 0-{EPOCHS - 1}" in printed
        and f"resumed from a checkpoint in epoch {epoch + (batch == 'end')}" in printed
    )
    assert f"optimizer steps      {trainer.global_step} (full data: {EPOCHS * math.ceil(N / B)})" in printed


def test_summary_after_resuming_at_an_epoch_end_counts_the_whole_run(tmp_path, capsys):
    """Issue 29: resumed from the checkpoint at epoch 1's end, the summary read "optimizer steps 24 (full data:
    18)": the steps of the whole run (global_step is restored) against the full data of the 3 epochs this fit
    ran. The callback's checkpoint now carries the summary's counts, so every count is the uninterrupted
    run's (which the first test checks against the epochs' kept sets)."""
    _check_resumed_run_counts_the_whole_run(tmp_path, capsys, epoch=1, batch="end")


def test_summary_after_resuming_mid_epoch_counts_the_whole_run(tmp_path, capsys):
    """Issue 29: resumed after batch 2 of epoch 2, the summary left epoch 2 out ("epochs 3-4"): Lightning does not
    begin an epoch it resumes. The checkpoint carries the epoch in progress (its start step, batches, time),
    so the resumed epoch counts whole and every count is the uninterrupted run's."""
    _check_resumed_run_counts_the_whole_run(tmp_path, capsys, epoch=2, batch=2)


def test_summary_after_resuming_a_checkpoint_without_summary_counts_says_it_counts_from_the_resume(tmp_path, capsys):
    """A checkpoint written with ``summary=False`` holds no counts of the epochs before it: the summary counts
    from the resumed batch on, against a full-data run over the same span (the rest of epoch 2 as a share of
    it), and says so."""
    ckpt = tmp_path / "run.ckpt"
    _run(tmp_path, SaveAt(ckpt, 2, 2), summary=False)
    capsys.readouterr()
    trained = TrainedBatches()
    resumed, trainer = _run(tmp_path, trained, ckpt_path=ckpt)
    v = resumed.summary.values
    passes = {e: sum(b) for e, b in trained.batches.items()}
    assert sorted(passes) == [2, 3, 4]
    assert v["summary/sample_passes"] == sum(passes.values())
    span = {e: N if e > 2 else round(N * passes[2] / trained.kept[2]) for e in passes}
    assert v["summary/saved_sample_passes"] == sum(span.values()) - sum(passes.values())
    assert (
        v["summary/optimizer_steps"]
        == trainer.global_step - trained.first_step
        == sum(map(len, trained.batches.values()))
    )
    assert v["summary/full_data_optimizer_steps"] == sum(math.ceil(s / B) for s in span.values())
    assert v["summary/whole_run"] == 0.0
    printed = capsys.readouterr().out
    assert "counted from the resume on: the checkpoint carried no summary counts" in printed
    assert "epoch 2 counted from" in printed


def test_summary_of_a_run_stopped_by_max_steps_mid_epoch_counts_what_it_trained(tmp_path, capsys):
    """Issue 29: ``max_steps=13`` stops in epoch 2; the summary counted epoch 2's whole kept set as trained and
    compared with 3 whole full-data epochs. It now counts the batches trained, against a full-data run stopped
    at the same share of epoch 2, and leaves the cut epoch out of the never/always dropped shares."""
    trained, sets = TrainedBatches(), TrainedSets()
    pruning, trainer = _run(tmp_path, trained, sets, max_steps=13)
    v = pruning.summary.values
    passes = {e: sum(b) for e, b in trained.batches.items()}
    assert trainer.global_step == 13 and sorted(passes) == [0, 1, 2] and passes[2] < trained.kept[2]
    assert v["summary/sample_passes"] == sum(passes.values())
    span = {0: N, 1: N, 2: round(N * passes[2] / trained.kept[2])}
    assert v["summary/saved_sample_passes"] == sum(span.values()) - sum(passes.values())
    assert v["summary/saved_fraction"] == pytest.approx(1 - sum(passes.values()) / sum(span.values()))
    assert v["summary/optimizer_steps"] == 13
    assert v["summary/full_data_optimizer_steps"] == sum(math.ceil(s / B) for s in span.values())
    complete_pruned = [s for e, s in enumerate(sets.sets) if len(s) < N and e < 2]
    times = torch.zeros(N, dtype=torch.long)
    for s in complete_pruned:
        times[s] += 1
    assert v["summary/pruned_epochs"] == len(complete_pruned) == 1
    assert v["summary/never_dropped"] == pytest.approx(float((times == 1).float().mean()))
    assert "epoch 2 stopped after" in capsys.readouterr().out


class TwoOptimizers(LinearClassifier):
    """A manually optimized module stepping two optimizers (the head's weight and bias) every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = pruned_loss(self, torch.nn.functional.cross_entropy(self.fc(x), y, reduction="none"))
        first, second = self.optimizers()
        first.zero_grad()
        second.zero_grad()
        self.manual_backward(out["loss"])
        first.step()
        second.step()
        return out

    def configure_optimizers(self):
        return torch.optim.SGD([self.fc.weight], lr=0.1), torch.optim.SGD([self.fc.bias], lr=0.1)


def test_summary_with_two_optimizers_under_manual_optimization_counts_every_step(tmp_path, capsys):
    """Issue 29: under manual optimization Lightning's global_step counts each optimizer's step (2 a batch),
    and the full-data count took one a batch, so pruning read as costing steps. Both counts are now in
    global_step units (the full data at this run's steps per batch), next to the batches, and labelled."""
    trained = TrainedBatches()
    pruning, trainer = _run(tmp_path, trained, model=TwoOptimizers(), method="ucb")
    v = pruning.summary.values
    batches = sum(map(len, trained.batches.values()))
    assert v["summary/optimizer_steps"] == trainer.global_step == 2 * batches
    assert v["summary/full_data_optimizer_steps"] == 2 * EPOCHS * math.ceil(N / B)
    assert v["summary/training_batches"] == batches
    assert v["summary/full_data_training_batches"] == EPOCHS * math.ceil(N / B)
    assert v["summary/saved_sample_passes"] == N * EPOCHS - sum(sum(b) for b in trained.batches.values())
    printed = capsys.readouterr().out
    assert f"training batches     {batches} (full data: {EPOCHS * math.ceil(N / B)})" in printed
    assert "manual optimization: optimizer steps are Lightning's global_step" in printed


class IgnoringClassifier(LinearClassifier):
    """Cross-entropy with ``ignore_index=-1``: samples labelled -1 add nothing to the loss."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return pruned_loss(self, torch.nn.functional.cross_entropy(self.fc(x), y, reduction="none", ignore_index=-1))


def test_summary_with_negative_labels_for_ignore_index_leaves_them_out_of_the_classes(tmp_path, capsys):
    """Issue 29: a label of -1 (``ignore_index=-1``) crashed the summary at the end of fit (``bincount`` of a
    negative value). Such samples are now in no class: the per-class shares are over the labelled samples,
    the overall shares over all of them, and the count of unlabelled ones is logged and printed."""
    _write(tmp_path, n=N)
    _, y = torch.load(tmp_path / "train.pt")
    labels = y.clone()
    labels[::7] = -1
    sets = TrainedSets()
    pruning, _ = _run(tmp_path, sets, labels=labels, model=IgnoringClassifier())
    v = pruning.summary.values
    pruned = [s for s in sets.sets if len(s) < N]
    times = torch.zeros(N, dtype=torch.long)
    for s in pruned:
        times[s] += 1
    never, always = times == len(pruned), times == 0
    assert v["summary/unlabelled_samples"] == int((labels < 0).sum())
    assert v["summary/never_dropped"] == pytest.approx(float(never.float().mean()))
    assert not [k for k in v if k.endswith("class_-1")]
    for c in range(3):
        in_class = labels == c
        assert v[f"summary/never_dropped/class_{c}"] == pytest.approx(float(never[in_class].float().mean()))
        assert v[f"summary/always_dropped/class_{c}"] == pytest.approx(float(always[in_class].float().mean()))
    assert f"{int((labels < 0).sum())} samples with a negative label" in capsys.readouterr().out
