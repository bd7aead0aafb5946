"""experiments/ablate_ted.py keeps working: a quick paired run writes the table with every variant."""

from __future__ import annotations

import csv

import ablate_ted
import pytest
from conftest import requires_mnist

pytestmark = [pytest.mark.slow, requires_mnist]


def test_quick_ablation_reports_paired_differences_and_a_validation_choice(tmp_path):
    ablate_ted.main(
        ["--quick", "--tasks", "noisy_fashion", "--ratios", "0.7", "--seeds", "0", "1", "--workers", "1"]
        + ["--out", str(tmp_path)]
    )
    text = (tmp_path / "ablate_ted.md").read_text()
    for variant in ablate_ted.VARIANTS:
        assert f"| {variant}" in text
    assert text.count("**(best)**") == 1
    runs = list(csv.DictReader(open(tmp_path / "ablate_ted_runs.csv")))
    assert len(runs) == 2 * (1 + 2 + len(ablate_ted.VARIANTS))  # seeds x (full + 2 baselines + variants)
    # differences are paired per seed: the TED rows carry "mean ± se" against each baseline
    rows = text.splitlines()
    ted_row = next(
        r for r in rows if r.startswith(("| noisy_fashion | 0.7 | ted |", "| noisy_fashion | 0.7 | **ted** |"))
    )
    assert ted_row.count("±") == 3
    shares = [float(r["noisy_share_pruned"]) for r in runs if r["method"] != "full"]
    assert all(0.0 <= s <= 1.0 for s in shares)
