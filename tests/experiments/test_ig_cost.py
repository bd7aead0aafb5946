"""``experiments/ig_cost.py``: the dropped/kept split by hand, and ``--quick`` end to end."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import requires_mnist

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.fixture
def ig_cost(monkeypatch):
    """The script as a module, imported the way ``PYTHONPATH=experiments`` runs it."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    return importlib.import_module("ig_cost")


def test_dropped_and_kept_changes_match_a_hand_computation(ig_cost):
    before = torch.tensor([1.0, 2.0, 0.5, 0.8, 1.2])
    after = torch.tensor([0.9, 1.9, 0.2, 0.4, 1.0])  # changes -0.1, -0.1, -0.3, -0.4, -0.2
    drop = torch.tensor([True, True, False, False, False])
    out = ig_cost.split_changes(before, after, drop)
    assert out["dropped_change"] == pytest.approx(-0.1)  # (-0.1 - 0.1) / 2
    assert out["kept_change"] == pytest.approx(-0.3)  # (-0.3 - 0.4 - 0.2) / 3
    assert out["gap"] == pytest.approx(0.2)
    assert out["ratio"] == pytest.approx(1 / 3)
    # a kept loss that did not fall gives no ratio (as the package's reading)
    assert math.isnan(ig_cost.split_changes(before, before + 0.1, drop)["ratio"])


def test_readings_over_the_horizon_per_epoch_and_first_epoch(ig_cost):
    drop = torch.tensor([True, False, False, False])
    losses = [
        torch.tensor([1.0, 1.0, 1.0, 1.0]),
        torch.tensor([0.9, 0.6, 0.6, 0.6]),
        torch.tensor([0.9, 0.4, 0.4, 0.4]),
    ]
    full = [losses[0], torch.tensor([0.7, 0.6, 0.6, 0.6]), torch.tensor([0.5, 0.4, 0.4, 0.4])]
    r = ig_cost.readings(losses, full, drop)
    assert r["loss_level"] == pytest.approx(1.0)
    assert (r["dropped_change"], r["kept_change"], r["gap"]) == pytest.approx((-0.1, -0.6, 0.5))
    assert r["ratio"] == pytest.approx(1 / 6) and r["gap_rel"] == pytest.approx(0.5)
    assert r["gap_per_epoch"] == pytest.approx(0.25) and r["gap_rel_per_epoch"] == pytest.approx(0.25)
    assert (r["dropped_change_first"], r["kept_change_first"], r["gap_first"]) == pytest.approx((-0.1, -0.4, 0.3))
    assert [e["gap"] for e in r["epochs"]] == pytest.approx([0.3, 0.2])
    assert r["dropped_train_cost"] == pytest.approx(-0.1 - (-0.5))  # the oracle: the same samples on full data
    assert r["kept_train_cost"] == pytest.approx(0.0)


@requires_mnist
def test_continuations_from_one_checkpoint_are_identical_and_match_the_full_run(ig_cost):
    """Optimizer.load_state_dict adopts the checkpoint's state tensors: neither continuation may alter it."""
    sv = importlib.import_module("score_validity")
    task = sv.TASKS["quick"]
    data = sv.load(task)
    snaps, after = sv.full_run(task, data, 0, ["random"])
    ones = torch.ones(data[1].shape[0])
    first = sv.continue_run(task, snaps[2], data, 0, 2, ones)
    m, losses = ig_cost.continuation(task, snaps[2], data, 0, 2, ones)
    again = sv.continue_run(task, snaps[2], data, 0, 2, ones)
    assert first == again and first["val_loss"] == after[2]["val_loss"]
    assert m["val_loss"] == first["val_loss"] and m["val_acc"] == first["val_acc"]
    assert len(losses) == task.horizon + 1 and float(losses[-1].mean()) == pytest.approx(first["train_loss"])


@requires_mnist
def test_quick_run_writes_every_field_and_regenerates_its_report(ig_cost, tmp_path):
    ig_cost.main(["--quick", "--out", str(tmp_path)])
    task = importlib.import_module("score_validity").TASKS["quick"]
    rows = [json.loads(line) for line in (tmp_path / "ig_cost_quick.jsonl").read_text().splitlines()]
    assert {(r["seed"], r["phase"]) for r in rows} == {(s, p) for s in (0, 1) for p in task.phases}
    fields = {field for field, _, _ in ig_cost.READINGS} | {"val_loss", "val_acc", "full_val_loss", "full_val_acc"}
    fields |= {"cont_full_val_loss", "kept_change_per_epoch", "dropped_change_per_epoch", "epochs"}
    for r in rows:
        assert fields <= r.keys()
        assert r["n_dropped"] == round(0.3 * r["n_train"]) and len(r["epochs"]) == r["horizon"]
        assert r["gap"] == pytest.approx(r["dropped_change"] - r["kept_change"])
        assert r["gap_rel"] == pytest.approx(r["gap"] / r["loss_level"])
        assert r["cont_full_val_loss"] == r["full_val_loss"]  # the continuation reproduces the full run
    table = (tmp_path / "ig_cost_quick.md").read_text()
    assert "## Per task-phase" in table and "## Correlation across task-phases (n = 3, few points" in table
    assert "| gap, first epoch |" in table
    ig_cost.main(["--quick", "--out", str(tmp_path), "--report-only"])
    assert (tmp_path / "ig_cost_quick.md").read_text() == table
