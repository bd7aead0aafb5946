"""``experiments/ig_validity.py``: the aligned brute-force reading on a hand-made run, and ``--quick`` end to end."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import requires_mnist

_PATH = Path(__file__).resolve().parents[2] / "experiments" / "ig_validity.py"


@pytest.fixture(scope="module")
def ig_validity():
    spec = importlib.util.spec_from_file_location("ig_validity", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ig_validity"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("ig_validity", None)


def test_aligned_brute_force_reads_each_sample_over_exactly_the_epochs_it_sat_out(ig_validity):
    # 4 samples, 4 epochs; B[e] = loss at the start of epoch e, B[4] at the end
    B = torch.tensor(
        [
            [2.0, 2.0, 2.0, 2.0],
            [1.0, 1.2, 1.4, 1.6],
            [0.8, 1.0, 1.3, 1.5],
            [0.5, 0.9, 1.0, 1.1],
            [0.3, 0.7, 0.6, 1.0],
        ],
        dtype=torch.float64,
    )
    K = torch.tensor(
        [
            [True, True, True, True],  # warm-up
            [True, True, False, False],
            [True, False, False, True],
            [True, True, True, True],  # anneal
        ]
    )
    assert ig_validity.previous_epoch(K, 3).tolist() == [2, 1, 0, 2]
    r1 = ig_validity.aligned_brute_force(B, K, 1)  # samples 0 and 1 continue from 0: -1.0 and -0.8
    assert r1["kept"] == pytest.approx(-0.9) and r1["kept_n"] == 2 and math.isnan(r1["pruned"])
    r2 = ig_validity.aligned_brute_force(B, K, 2)
    # kept: sample 0 (1 -> 2): -0.2; returning: sample 3 (last trained 0, out in 1): B[2] - B[1] = -0.1 over 1 epoch
    assert r2["kept"] == pytest.approx(-0.2) and r2["kept_n"] == 1
    assert r2["pruned"] == pytest.approx(-0.1) and r2["returned_n"] == 1 and r2["out_epochs"] == 1
    assert r2["kept_mid"] == pytest.approx((0.5 - 1.0) / 2)
    r3 = ig_validity.aligned_brute_force(B, K, 3)
    # kept: samples 0 and 3 (2 -> 3): -0.3 and -0.4; returning: sample 1 (last 1, out in 2): 0.9 - 1.0 = -0.1,
    # sample 2 (last 0, out in 1 and 2): 1.0 - 1.4 = -0.4; pooled (-0.1 - 0.4) / (1 + 2) epochs out
    assert r3["kept"] == pytest.approx(-0.35) and r3["kept_n"] == 2
    assert r3["pruned"] == pytest.approx(-0.5 / 3) and r3["returned_n"] == 2 and r3["out_epochs"] == 3
    bf = ig_validity.issue_brute_force(B, K, 1)  # kept 0, 1: -0.2, -0.2; pruned 2, 3: -0.1, -0.1
    assert bf["kept"] == pytest.approx(-0.2) and bf["pruned"] == pytest.approx(-0.1)
    assert math.isnan(ig_validity.issue_brute_force(B, K, 0)["pruned"])  # nothing pruned in the warm-up
    observed = torch.full((4, 4), math.nan, dtype=torch.float64)
    observed[2] = torch.tensor([0.9, 0.4, 1.3, 1.5])  # last observed losses at the start of epoch 2
    sel = ig_validity.selection_losses(observed, B, K, 2)  # trained in 1: samples 0 (kept in 2) and 1 (pruned)
    assert sel == pytest.approx({"obs_pruned": 0.4, "fresh_pruned": 1.0, "obs_kept": 0.9, "fresh_kept": 0.8})


def test_a_return_whose_own_step_epoch_had_no_continuing_samples_is_skipped_as_the_free_reading_skips_it(ig_validity):
    # alternating halves (RS2 at 0.5): nobody is trained in 1 and 2, so a sample last trained in 1 has no own-step rate
    B = torch.arange(8, dtype=torch.float64).reshape(4, 2).neg()
    K = torch.tensor([[True, True], [True, False], [False, True]])
    r2 = ig_validity.aligned_brute_force(B, K, 2)  # sample 1: last trained 0, own step in 1 (sample 0 continued)
    assert r2["returned_n"] == 1 and math.isnan(r2["kept"])
    K3 = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    B3 = torch.arange(10, dtype=torch.float64).reshape(5, 2).neg()
    r3 = ig_validity.aligned_brute_force(B3, K3, 3)  # sample 0: last 1, own-step epoch 2 had no continuing samples
    assert r3["returned_n"] == 0 and math.isnan(r3["pruned"])
    assert r3["kept_n"] == 1  # sample 1: trained in 2 and 3


def test_summary_correlations_are_finite_with_three_epochs_and_one_where_free_equals_brute_force(ig_validity):
    rows = []
    for e in range(6):
        kept, pruned = -1.0 / (e + 1), -0.3 / (e + 1) + 0.01 * e
        rows.append(
            {
                "seed": 0,
                "epoch": e,
                "kept_fraction": 1.0 if e in (0, 5) else 0.7,
                "free_kept": kept if e else math.nan,
                "free_pruned": pruned if e >= 2 else math.nan,
                "free_gap": pruned - kept if e >= 2 else math.nan,
                "al_kept": kept if e else math.nan,
                "al_kept_mid": kept if e else math.nan,
                "al_pruned": pruned if e >= 2 else math.nan,
                "al_gap": pruned - kept if e >= 2 else math.nan,
                "bf_kept": kept,
                "bf_pruned": pruned if e not in (0, 5) else math.nan,
                "bf_gap": pruned - kept if e not in (0, 5) else math.nan,
                "bf_gap_prev": pruned - kept if 2 <= e else math.nan,
                **dict.fromkeys(("obs_pruned", "fresh_pruned", "obs_kept", "fresh_kept"), 0.5),
            }
        )
    s = ig_validity.summarise(rows)
    assert s["n_kept"] == s["n_pruned"] == s["n_gap"] == 4  # epochs 2..5
    for key in ("r_kept", "r_pruned", "r_gap", "r_kept_mid"):
        assert s[key] == pytest.approx(1.0)
    assert s["sign_gap"] == 1.0 and s["free_kept1"] == s["al_kept1"] == pytest.approx(-0.5)
    assert math.isnan(ig_validity.pearson([1.0, 2.0], [1.0, 2.0]))  # fewer than 3 pairs


@pytest.mark.slow
@requires_mnist
def test_quick_run_writes_the_tables_and_the_per_epoch_rows(ig_validity, tmp_path):
    text = ig_validity.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "ig_validity.md").read_text() == text
    assert "python experiments/ig_validity.py --quick" in text
    agreement = next(line for line in text.splitlines() if line.startswith("| task | method | ratio | seeds"))
    columns = [c.strip() for c in agreement.strip("|").split("|")]
    assert columns == [
        "task", "method", "ratio", "seeds", "epochs k/p/g", "r kept", "r kept (mid)", "r pruned", "r gap",
        "sign gap", "sign gap vs bf(e-1)", "r gap vs bf(e-1)",
    ]  # fmt: skip
    row = next(line for line in text.splitlines() if line.startswith("| mnist | ted | 0.3 | 1 |"))
    cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|")), strict=True))
    n_kept, n_pruned, _ = map(int, cells["epochs k/p/g"].split("/"))
    assert n_kept >= 1 and n_pruned >= 1  # TED at 0.3 keeps most samples two epochs running, and some return
    for name, n in (("r kept", n_kept), ("r pruned", n_pruned)):
        if n >= 3:
            assert math.isfinite(float(cells[name]))
        else:
            assert cells[name] == "–"
    runs = ig_validity.read_runs(tmp_path / "ig_validity_runs.csv")
    assert [r["epoch"] for r in runs] == [0, 1, 2, 3]
    assert runs[1]["free_kept_n"] == runs[1]["al_kept_n"] > 0  # the same samples on both sides
    assert runs[2]["free_returned_n"] == runs[2]["al_returned_n"] > 0
    assert all(math.isfinite(r["bf_pruned"]) for r in runs if 0 < r["kept_fraction"] < 1)
    again = ig_validity.main(["--quick", "--report-only", "--out", str(tmp_path)])
    assert again.split("## Agreement")[1] == text.split("## Agreement")[1]
