"""What the callback reports: W&B offline run files, CSV logs, the progress bar, and plots of them."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import requires_mnist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.observe.epoch_metrics import SAMPLE
from lightning_ted.observe.plots import load_history, plot_prune_ratio, plot_score_distribution
from lightning_ted.observe.run_history import epoch_rows, read_csv_metrics, read_wandb_run
from lightning_ted.zoo.data import ImageData
from lightning_ted.zoo.models import Classifier, SmallCNN

EPOCHS, N = 3, 600
SCALARS = (
    "prune/target_ratio",
    "prune/actual_ratio",
    "prune/kept_samples",
    "prune/saved_sample_passes",
    "prune/saved_fraction",
    "prune/score_q10",
    "prune/score_q50",
    "prune/score_q90",
)


class BarWatcher(Callback):
    """Records what the progress bar holds for 'kept' in the middle of every epoch."""

    def __init__(self) -> None:
        self.seen: dict[int, str] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 1:
            self.seen[trainer.current_epoch] = trainer.progress_bar_metrics.get("kept")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One short real run logged to W&B (offline) and CSV at once."""
    root = tmp_path_factory.mktemp("logged")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_DIR", str(root))
    L.seed_everything(0)
    dm = DynamicPruningDataModule(
        datamodule=ImageData(limit=N, val_size=200, batch_size=64),
        schedule=RollerCoasterSchedule(ratio=0.5, beta=0.1),
        seed=0,
    )
    wandb_logger = WandbLogger(project="lightning-ted-test", save_dir=str(root), offline=True)
    csv_logger = CSVLogger(str(root / "csv"))
    bar = BarWatcher()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        callbacks=[TEDPruningCallback(), bar],
        logger=[wandb_logger, csv_logger],
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(Classifier(SmallCNN(), max_epochs=EPOCHS), datamodule=dm)
    import wandb

    wandb.finish()
    mp.undo()
    return dm, trainer, root, bar


@requires_mnist
def test_wandb_offline_run_holds_every_pruning_metric_per_epoch(logged_run):
    """The .wandb file has one row per epoch with the scalars, per-class fractions and a histogram."""
    dm, _, root, _ = logged_run
    run = read_wandb_run(root / "wandb")
    rows = epoch_rows(run["history"])
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    for epoch, row in enumerate(rows):
        assert set(SCALARS) <= set(row)
        assert row["prune/kept_samples"] == int(dm.kept_history[epoch])
        assert row["prune/target_ratio"] == pytest.approx(dm.schedule.prune_ratio(epoch))
        assert row["prune/actual_ratio"] == pytest.approx(1 - int(dm.kept_history[epoch]) / N)
        passes = N * (epoch + 1) - int(dm.kept_history[: epoch + 1].sum())
        assert row["prune/saved_sample_passes"] == passes
        assert row["prune/score_q10"] <= row["prune/score_q50"] <= row["prune/score_q90"]
        hist = row["prune/score_histogram"]
        assert hist["_type"] == "histogram" and len(hist["bins"]) == len(hist["values"]) + 1
        assert sum(hist["values"]) == min(N, SAMPLE)  # every sample is scored after the first epoch
    assert rows[0]["prune/target_ratio"] == 0 and rows[-1]["prune/target_ratio"] > 0.4  # warm-up, then pruning


@requires_mnist
def test_kept_fraction_per_class_matches_the_selection(logged_run):
    """prune/kept_fraction/class_c is the share of class c's samples in the last epoch's kept set."""
    dm, _, root, _ = logged_run
    last = epoch_rows(read_wandb_run(root / "wandb")["history"])[-1]
    labels = dm.train_labels()
    kept = torch.bincount(labels[dm.current_selection.indices], minlength=10)
    total = torch.bincount(labels, minlength=10)
    for c in range(10):
        assert last[f"prune/kept_fraction/class_{c}"] == pytest.approx(kept[c].item() / total[c].item())


@requires_mnist
def test_wandb_charts_are_defined_against_the_epoch(logged_run):
    """prune/* and ig/* are plotted against epoch in W&B (define_metric), not against the global step, and the
    ig readings reach W&B beside the ratio once samples return from being pruned."""
    dm, _, root, _ = logged_run
    run = read_wandb_run(root / "wandb")
    assert {"name": "prune/*", "step_metric": "epoch"} in run["metrics"]
    assert {"name": "ig/*", "step_metric": "epoch"} in run["metrics"]
    rows = epoch_rows(run["history"])
    assert rows[1]["ig/kept_loss_change"] == pytest.approx(dm.generalization.reading(1).kept_loss_change)
    returned = [r for r in rows if "ig/pruned_loss_change" in r]
    assert returned and all("ig/gap" in r and "prune/target_ratio" in r for r in returned)


@requires_mnist
def test_csv_logger_receives_the_same_scalars_without_wandb_settings(logged_run):
    """Scalars reach a plain CSVLogger too, with the values W&B got."""
    _, trainer, root, _ = logged_run
    csv_rows = epoch_rows(read_csv_metrics(Path(trainer.loggers[1].log_dir)))
    wandb_rows = epoch_rows(read_wandb_run(root / "wandb")["history"])
    assert len(csv_rows) == EPOCHS
    for a, b in zip(csv_rows, wandb_rows, strict=True):
        for key in SCALARS:
            assert a[key] == pytest.approx(b[key], rel=1e-6)


@requires_mnist
def test_progress_bar_shows_the_kept_share_in_a_few_columns(logged_run):
    """The progress bar's 'kept' entry reads the running epoch's kept share, '61%' (at most 4 characters, so
    the bar fits an 80-column terminal where '30000/60000' made it wrap)."""
    dm, _, _, bar = logged_run
    assert bar.seen == {e: f"{100 * int(dm.kept_history[e]) / N:.0f}%" for e in range(EPOCHS)}
    assert all(len(text) <= 4 for text in bar.seen.values())


@requires_mnist
def test_plots_from_csv_and_wandb_histories(logged_run, tmp_path):
    """The plots read both histories and draw the logged values (one point per epoch)."""
    dm, trainer, root, _ = logged_run
    fig = plot_prune_ratio(trainer.loggers[1].log_dir, out=tmp_path / "ratio.png")
    actual = fig.axes[0].lines[1].get_ydata()
    assert list(actual) == pytest.approx([1 - int(k) / N for k in dm.kept_history.tolist()])
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks), f"a 3-epoch run drew fractional epoch ticks {ticks}"
    fig = plot_score_distribution(root / "wandb", out=tmp_path / "scores.png")
    assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())
    assert len(fig.axes) == 2  # quantiles and the W&B histograms
    for name in ("ratio.png", "scores.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_refuse_a_history_without_pruning_metrics():
    """A history without prune/* metrics is a clear error, not an empty figure."""
    with pytest.raises(ValueError, match="no per-epoch prune/"):
        load_history([{"epoch": 0, "val_acc": 0.5}])
