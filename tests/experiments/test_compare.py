"""``experiments/compare.py --quick`` runs every method end to end on tiny subsets and writes its tables."""

from __future__ import annotations

import csv

import compare
import pytest
from conftest import requires_mnist

from lightning_ted import RollerCoasterSchedule

pytestmark = [pytest.mark.slow, requires_mnist]


def test_quick_grid_writes_a_row_per_method_with_sane_values(tmp_path):
    compare.main(
        ["--quick", "--tasks", "noisy_mnist", "sst2", "--train-size", "600", "--workers", "1", "--out", str(tmp_path)]
    )
    for task in ("noisy_mnist", "sst2"):
        table = (tmp_path / f"{task}.md").read_text()
        with open(tmp_path / f"{task}.csv") as fh:
            rows = {r["method"]: r for r in csv.DictReader(fh)}
        assert set(rows) == set(compare.ALL_METHODS), task
        for method, row in rows.items():
            assert f"| {method} |" in table
            saved = float(row["saved"])
            assert 0.0 <= saved < 0.5, (task, method, saved)
            assert float(row["speedup"]) > 0
        assert float(rows["full"]["saved"]) == 0.0
        assert (tmp_path / f"{task}_accuracy_vs_saved.png").read_bytes()[:4] == b"\x89PNG"
        # every exact-count method saves what the shared schedule prescribes
        schedule = RollerCoasterSchedule(ratio=0.5, beta=compare.DEFAULT_BETA)
        schedule.bind(3)
        expected = sum(schedule.prune_ratio(e) for e in range(3)) / 3
        assert float(rows["ted"]["saved"]) == pytest.approx(expected, abs=0.005)
        assert float(rows["random"]["saved"]) == pytest.approx(float(rows["ted"]["saved"]))
    noisy = {r["method"]: r for r in csv.DictReader(open(tmp_path / "noisy_mnist.csv"))}
    assert float(noisy["full"]["test_acc"]) > 30.0  # well above chance (10%) even after 3 epochs on 600 samples
    share = float(noisy["ted"]["noisy_share_pruned"])
    assert 0.0 <= share <= 1.0
    assert "flipped share of pruned" in (tmp_path / "noisy_mnist.md").read_text()
