"""Issue 30: the free internal-generalization readings (``ig/*``), against brute force and through a real fit."""

from __future__ import annotations

import bisect
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.nn import functional as F

from lightning_ted import ConstantSchedule, DynamicPruningDataModule, TEDPruningCallback, pruned_loss
from lightning_ted.adapters.callback import PER_SAMPLE_KEY
from lightning_ted.observe.generalization import LOSS_BINS, GeneralizationMeter
from lightning_ted.observe.plots import plot_prune_ratio
from lightning_ted.observe.run_history import read_csv_metrics

N, B, EPOCHS = 160, 32, 6


class LinearClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return pruned_loss(self, F.cross_entropy(self.fc(x), y, reduction="none"))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _data() -> torch.utils.data.TensorDataset:
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (N,), generator=gen)
    return torch.utils.data.TensorDataset(torch.randn(N, 8, generator=gen) + 2.0 * F.one_hot(y, 8).float(), y)


def brute_force(
    visits: list[tuple[int, list[int], list[float]]], n: int, members: set[int] | None = None
) -> dict[int, tuple[float, float]]:
    """Per epoch ``(kept change, pruned change per out-epoch)``, sample by sample, as the docstring states them
    (``visits``: batches in training order, several per epoch); over the samples in ``members`` only (one
    class), the own-step correction still from every kept sample."""
    epochs: dict[int, tuple[list[int], list[float]]] = {}
    for epoch, index, loss in visits:
        epochs.setdefault(epoch, ([], []))
        epochs[epoch][0].extend(index)
        epochs[epoch][1].extend(loss)
    edges = LOSS_BINS.tolist()
    last: dict[int, tuple[int, float]] = {}
    kept_rate: dict[int, float] = {}
    by_bin: dict[tuple[int, int], list[float]] = {}  # (epoch, bin of the previous loss) -> kept changes
    out: dict[int, tuple[float, float]] = {}
    for epoch, (index, loss) in sorted(epochs.items()):
        seen_now, kept, back, out_epochs = set(), [], [], 0
        for i, value in zip(index, loss, strict=True):
            if i < 0 or i in seen_now:
                continue
            seen_now.add(i)
            if i in last:
                prev, before = last[i]
                where = bisect.bisect_left(edges, before)  # torch.bucketize's bin
                counted = members is None or i in members
                if prev == epoch - 1:
                    kept.extend([value - before] if counted else [])
                    by_bin.setdefault((epoch, where), []).append(value - before)
                elif (prev + 1, where) in by_bin and counted:
                    same = by_bin[prev + 1, where]
                    back.append(value - before - sum(same) / len(same))
                    out_epochs += epoch - prev - 1
            last[i] = (epoch, value)
        if kept:
            kept_rate[epoch] = sum(kept) / len(kept)
        out[epoch] = (kept_rate.get(epoch, math.nan), sum(back) / out_epochs if out_epochs else math.nan)
    return out


def _feed(meter: GeneralizationMeter, visits, n: int) -> None:
    last_epoch = torch.full((n,), -1, dtype=torch.int32)
    for epoch, index, loss in visits:
        index = torch.tensor(index, dtype=torch.int64)
        meter.observe(index, torch.tensor(loss, dtype=torch.float32), last_epoch, epoch)
        valid = index[index >= 0]
        last_epoch[valid] = epoch


def test_readings_match_a_sample_by_sample_computation():
    """Random kept sets, duplicates (DDP padding) and -1 rows: the vectorized sums are the brute-force means."""
    g = torch.Generator().manual_seed(0)
    n, visits = 50, []
    for epoch in range(8):
        kept = torch.randperm(n, generator=g)[: int(n * (1.0 if epoch < 1 else 0.4 + 0.1 * (epoch % 3)))]
        index = torch.cat([kept, kept[:3], torch.tensor([-1])]).tolist()  # three repeats and a skipped row
        loss = (torch.rand(len(index), generator=g) * 3 / (epoch + 1)).tolist()
        loss = [round(v, 3) for v in loss]  # float32-exact enough for the comparison below
        visits.append((epoch, index, loss))
    meter = GeneralizationMeter(n)
    _feed(meter, visits, n)
    expected = brute_force(visits, n)
    for epoch, (kept, pruned) in expected.items():
        r = meter.reading(epoch)
        assert r.kept_loss_change == pytest.approx(kept, abs=1e-6, nan_ok=True), epoch
        assert r.pruned_loss_change == pytest.approx(pruned, abs=1e-6, nan_ok=True), epoch
    assert any(not math.isnan(p) for _, p in expected.values()), "some samples returned after sitting out"


def test_per_class_readings_match_the_computation_over_each_class_alone():
    """With labels the meter reads each class's samples alone (the own-step correction from every kept sample
    of the same previous loss), and the classes' sums add up to the whole epoch's."""
    g = torch.Generator().manual_seed(2)
    n, visits = 60, []
    labels = torch.randint(0, 3, (n,), generator=g)
    labels[:4] = -1  # an ignore_index: in no class
    for epoch in range(7):
        kept = torch.randperm(n, generator=g)[: n if epoch == 0 else 30]
        loss = [round(v, 3) for v in (torch.rand(len(kept), generator=g) * 2 / (epoch + 1)).tolist()]
        visits.append((epoch, kept.tolist(), loss))
    meter = GeneralizationMeter(n, labels)
    _feed(meter, visits, n)
    for c in range(3):
        members = set(torch.nonzero(labels == c).squeeze(1).tolist())
        for epoch, (kept, pruned) in brute_force(visits, n, members).items():
            r = meter.class_readings(epoch)[c]
            assert r.kept_loss_change == pytest.approx(kept, abs=1e-6, nan_ok=True), (c, epoch)
            assert r.pruned_loss_change == pytest.approx(pruned, abs=1e-6, nan_ok=True), (c, epoch)
    unlabelled = GeneralizationMeter(n, torch.where(labels < 0, 0, labels))  # the same data, every sample in a class
    _feed(unlabelled, visits, n)
    torch.testing.assert_close(unlabelled.class_sums.sum(dim=1), unlabelled.sums, rtol=0, atol=1e-9)
    assert GeneralizationMeter(n, torch.arange(n) * 10).class_readings(0) == []  # ids, not classes: none


def test_observations_split_across_two_syncs_of_one_epoch_read_like_one():
    """A validation inside an epoch folds its observations early (val_check_interval < 1): same readings."""
    n = 40
    g = torch.Generator().manual_seed(1)
    visits = [(e, torch.randperm(n, generator=g)[: 40 if e == 0 else 20].tolist(), None) for e in range(5)]
    visits = [(e, i, torch.rand(len(i), generator=g).tolist()) for e, i, _ in visits]
    whole, split = GeneralizationMeter(n), GeneralizationMeter(n)
    _feed(whole, visits, n)
    halves = [(e, part_i, part_l) for e, i, lo in visits for part_i, part_l in ((i[:7], lo[:7]), (i[7:], lo[7:]))]
    _feed(split, halves, n)
    torch.testing.assert_close(split.sums, whole.sums, rtol=0, atol=1e-12)


def test_ratio_needs_a_falling_kept_loss():
    meter = GeneralizationMeter(2)
    meter.observe(torch.tensor([0, 1]), torch.tensor([1.0, 1.0]), torch.tensor([-1, -1], dtype=torch.int32), 0)
    meter.observe(torch.tensor([0, 1]), torch.tensor([1.2, 1.1]), torch.tensor([0, 0], dtype=torch.int32), 1)
    reading = meter.reading(1)
    assert reading.kept_loss_change > 0 and math.isnan(reading.ratio)
    assert "ig/ratio" not in reading.log_values() and "ig/kept_loss_change" in reading.log_values()


class LossTrail(Callback):
    """Every trained sample's index and observed loss, batch by batch, as the callback received them."""

    def __init__(self) -> None:
        self.visits: list[tuple[int, list[int], list[float]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        index = trainer.datamodule.batch_context  # cleared by the pruning callback, listed after this one
        self.visits.append((trainer.current_epoch, index.index.tolist(), outputs[PER_SAMPLE_KEY].tolist()))


def _fit(tmp_path):
    dm = DynamicPruningDataModule(_data(), batch_size=B, method="random",
                                  schedule=ConstantSchedule(0.3, anneal=0.0))  # fmt: skip
    trail, pruning = LossTrail(), TEDPruningCallback()
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", callbacks=[trail, pruning],
                        logger=CSVLogger(str(tmp_path / "logs")), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(LinearClassifier(), datamodule=dm)
    return dm, trainer, pruning, trail


def test_user_fits_with_random_pruning_and_reads_the_ig_metrics_each_epoch(tmp_path, capsys):
    """The logged ig/* are the brute-force readings of the losses training_step returned; the summary prints
    the run's pooled pace."""
    dm, trainer, pruning, trail = _fit(tmp_path)
    expected = brute_force(trail.visits, N)
    rows = {int(r["epoch"]): r for r in read_csv_metrics(Path(trainer.logger.log_dir) / "metrics.csv")
            if "ig/kept_loss_change" in r}  # fmt: skip
    for epoch in range(1, EPOCHS):
        kept, pruned = expected[epoch]
        assert rows[epoch]["ig/kept_loss_change"] == pytest.approx(kept, rel=1e-5)
        if not math.isnan(pruned):
            assert rows[epoch]["ig/pruned_loss_change"] == pytest.approx(pruned, rel=1e-4, abs=1e-6)
    assert any("ig/pruned_loss_change" in r for r in rows.values()), "random pruning at 30% returns samples"
    by_class = {c: brute_force(trail.visits, N, set(torch.nonzero(dm.train_labels() == c).squeeze(1).tolist()))
                for c in range(3)}  # fmt: skip
    for epoch, row in rows.items():  # per class, the same readings over each class's samples
        for c in range(3):
            kept, pruned = by_class[c][epoch]
            if kept < 0 and not math.isnan(pruned):
                assert row[f"ig/ratio/class_{c}"] == pytest.approx(pruned / kept, rel=1e-4, abs=1e-6)
    assert any("ig/ratio/class_0" in r for r in rows.values())
    for epoch, row in rows.items():  # the loss level: the mean loss the epoch's training steps observed
        observed = [lo for e, _, losses in trail.visits if e == epoch for lo in losses]
        assert row["ig/loss_level"] == pytest.approx(sum(observed) / len(observed), rel=1e-5)
        if "ig/gap" in row:
            assert row["ig/relative_gap"] == pytest.approx(row["ig/gap"] / row["ig/loss_level"], rel=1e-5)
    values = pruning.summary.values
    assert values["summary/ig_epochs"] >= 1 and math.isfinite(values["summary/ig_pruned_loss_change"])
    assert "internal generalization" in capsys.readouterr().out
    fig = plot_prune_ratio(trainer.logger.log_dir, out=tmp_path / "ratio.png")
    assert len(fig.axes) == 2 and "ig/ratio" in fig.axes[1].get_ylabel(), "ig/ratio drawn beside the prune ratio"
    assert (tmp_path / "ratio.png").stat().st_size > 0


def test_user_resumes_a_checkpoint_written_before_the_ig_readings_is_warned(tmp_path):
    dm, trainer, _, _ = _fit(tmp_path)
    state = dm.state_dict()
    del state["generalization"]
    again = DynamicPruningDataModule(_data(), batch_size=B, method="random",
                                     schedule=ConstantSchedule(0.5, max_epochs=EPOCHS))  # fmt: skip
    again.setup("fit")
    with pytest.warns(UserWarning, match="no internal-generalization readings"):
        again.load_state_dict(state)
    assert torch.isnan(again.generalization.last_loss).all()


def test_resuming_with_another_dataset_size_is_refused():
    meter = GeneralizationMeter(5)
    with pytest.raises(ValueError, match="5 samples but this training set has 6"):
        GeneralizationMeter(6).load_state_dict(meter.state_dict())


def test_the_examples_in_the_docstrings_run():
    import doctest

    from lightning_ted.core import generalization  # the meter is defined there; observe/ re-exports it

    result = doctest.testmod(generalization, verbose=False)
    assert result.attempted >= 4 and result.failed == 0
