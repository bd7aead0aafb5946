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

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
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
