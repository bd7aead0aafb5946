"""``experiments/frontier.py``: the frontier arithmetic against hand values, and ``--quick`` end to end."""

from __future__ import annotations

import csv
import json
import math

import frontier
import pytest
import torch
from conftest import requires_mnist

from lightning_ted.zoo.datasets import default_data_root


def test_frontier_interpolates_between_budget_points_and_extends_the_end_segments():
    pts = [(0.0, 90.0), (0.5, 80.0), (-0.5, 91.0)]
    assert frontier.frontier_at(pts, 0.25) == pytest.approx(85.0)
    assert frontier.frontier_at(pts, -0.25) == pytest.approx(90.5)
    assert frontier.frontier_at(pts, 0.6) == pytest.approx(78.0)  # extended beyond the cheapest budget


def test_schedule_ratio_saves_the_target_exactly_for_exact_methods_and_caps_infobatch():
    spec = frontier.TASKS["fashion"]  # 16 epochs: 1 warm-up, 2 anneal, 13 pruning epochs
    assert frontier.schedule_ratio("ted", 0.5, spec) * 13 / 16 == pytest.approx(0.5)
    r = frontier.schedule_ratio("infobatch", 0.3, spec)
    assert r * spec.infobatch_candidates * 13 / 16 == pytest.approx(0.3)
    assert frontier.schedule_ratio("infobatch", 0.7, spec) == frontier.INFOBATCH_MAX_RATIO
    with pytest.raises(ValueError, match="cannot be reached"):
        frontier.schedule_ratio("random", 0.9, spec)


def test_saved_at_tolerance_walks_the_curve_down_to_full_minus_tolerance():
    rows = [
        {"method": "ted", "saved": 0.3, "val_acc": 90.0},
        {"method": "ted", "saved": 0.5, "val_acc": 89.6},
        {"method": "ted", "saved": 0.7, "val_acc": 80.0},
    ]
    # full 90.0 at 0 saved; 89.8 is crossed halfway between 0.3 (90.0) and 0.5 (89.6)
    assert frontier.saved_at_tolerance(rows, "ted", 90.0, "val_acc") == pytest.approx(0.4)


def test_gain_is_paired_per_seed_against_that_seeds_frontier():
    def res(method, level, seed, saved, acc):
        return frontier.Result("t", method, level, seed, 4, 0.0, saved, acc, acc, 1.0)

    results = [
        res("budget", 1.0, 0, 0.0, 90.0), res("budget", 0.5, 0, 0.5, 80.0),
        res("budget", 1.0, 1, 0.0, 70.0), res("budget", 0.5, 1, 0.5, 60.0),
        res("ted", 0.5, 0, 0.5, 81.0), res("ted", 0.5, 1, 0.5, 63.0),
    ]  # fmt: skip
    rows, _ = frontier.summarise(results)
    ted = next(r for r in rows if r["method"] == "ted")
    assert ted["gain"] == pytest.approx(2.0)  # +1 and +3 against their own seed's frontier
    assert ted["gain_se"] == pytest.approx(1.0)  # sd 1.414 / sqrt(2)


def test_grid_puts_five_seeds_on_budgets_and_the_half_target_three_elsewhere():
    cells = frontier.grid(["full", "ted"], frontier.BUDGETS, frontier.TARGETS, list(range(5)), [0, 1, 2])
    assert len([c for c in cells if c[0] == "budget"]) == 25
    assert sorted(c[2] for c in cells if c[:2] == ("ted", 0.5)) == [0, 1, 2, 3, 4]
    assert sorted(c[2] for c in cells if c[:2] == ("ted", 0.7)) == [0, 1, 2]
    assert all(c[2] < 3 for c in cells[: len(cells) - 12])  # seeds 3-4 (6 cells each) come last


@pytest.mark.slow
@requires_mnist
def test_quick_grid_writes_tables_and_resumes_from_its_cache(tmp_path, capsys):
    frontier.main(["--quick", "--tasks", "fashion", "--workers", "1", "--out", str(tmp_path)])
    runs = [json.loads(line) for line in (tmp_path / "frontier_fashion_runs.jsonl").read_text().splitlines()]
    methods = {"random", "infobatch", "ted"} | ({"seta"} if "seta" in frontier.METHODS else set())
    assert len(runs) == 2 * (5 + len(methods))
    with open(tmp_path / "frontier_fashion.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["method"] for r in rows} == {"full"} | methods
    budgets = {float(r["budget"]): float(r["saved"]) for r in rows if r["method"] == "full"}
    assert budgets == pytest.approx({1.5: -0.5, 1.0: 0.0, 0.7: 1 / 3, 0.5: 0.5, 0.3: 2 / 3})  # 9, 6, 4, 3, 2 of 6
    for r in rows:
        if r["method"] in ("random", "ted"):
            assert float(r["saved"]) == pytest.approx(0.5, abs=0.01)
        if r["method"] != "full":
            assert r["gain_se"] not in ("", "nan") and float(r["speedup"]) > 0
    text = (tmp_path / "frontier_fashion.md").read_text()
    assert "Convergence check" in text and "| ted |" in text
    assert (tmp_path / "frontier_fashion.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    frontier.main(["--quick", "--tasks", "fashion", "--workers", "1", "--out", str(tmp_path)])  # all cached
    assert "0 to run" in capsys.readouterr().out
    frontier.main(["--quick", "--tasks", "fashion", "--workers", "1", "--out", str(tmp_path), "--redo", "ted"])
    lines = (tmp_path / "frontier_fashion_runs.jsonl").read_text().splitlines()
    assert len(lines) == len(runs) and sum(json.loads(x)["method"] == "ted" for x in lines) == 2


@pytest.mark.slow
def test_gpu_script_runs_its_whole_grid_at_tiny_size_on_cpu(tmp_path):
    """``frontier_gpu.py --tiny``: the ResNet-9, bf16 autocast, uint8 data and augmentation on the (here CPU)
    device, every budget point and method at 50/70%; the table names the model and the command."""
    import frontier_gpu

    if not (default_data_root() / "CIFAR-10" / "cifar10_train.npz").exists():
        pytest.skip("shared/data/CIFAR-10 is not present")
    frontier_gpu.main(["--tiny", "--seeds", "1", "--out", str(tmp_path)])
    runs = [json.loads(x) for x in (tmp_path / "frontier_cifar10_gpu_runs.jsonl").read_text().splitlines()]
    methods = {m for m in frontier_gpu.METHODS_GPU if m in frontier.METHODS} - {"full"}
    assert len(runs) == 5 + 2 * len(methods)
    assert {r["method"] for r in runs} == {"budget"} | methods
    assert all(0.0 <= r["test_acc"] <= 100.0 for r in runs)
    text = (tmp_path / "frontier_cifar10_gpu.md").read_text()
    assert "ResNet-9" in text and "frontier_gpu.py --tiny" in text


def test_flipped_share_counts_pruned_passes_on_flipped_labels_and_is_reported_for_noisy_tasks():
    flipped = torch.tensor([True, False, False, False])
    assert frontier.flipped_share(flipped, torch.tensor([3, 1, 0, 0])) == pytest.approx(0.75)
    assert math.isnan(frontier.flipped_share(flipped, torch.zeros(4, dtype=torch.int64)))  # nothing pruned

    def res(method, level, seed, saved, acc, extra=None):
        return frontier.Result("noisy_fashion", method, level, seed, 4, 0.0, saved, acc, acc, 1.0, "", extra or {})

    results = [res("budget", 1.0, 0, 0.0, 80.0), res("budget", 0.5, 0, 0.5, 78.0),
               res("ted", 0.5, 0, 0.5, 79.0, {"flipped_share": 0.3}), res("random", 0.5, 0, 0.5, 78.0)]  # fmt: skip
    rows, conv = frontier.summarise(results)
    text = frontier.markdown(frontier.TASKS["noisy_fashion"], rows, conv, None)
    assert "| ted | 0.5 | 50.0% | 1 | 30.0% | 79.00 |" in text  # runs without the measure get no row
    assert "| random | 0.5 | 50.0% | 0 |" not in text


def test_summary_bolds_only_gains_clearing_two_standard_errors_on_test_and_validation(tmp_path):
    spec = frontier.TASKS["fashion"]

    def run(method, level, seed, saved, test, val):
        r = frontier.Result("fashion", method, level, seed, 4, 0.0, saved, test, val, 1.0, spec.fingerprint())
        return frontier.stamped(r, frontier.Job("fashion", method, level, seed), spec)

    runs = [run("budget", b, s, 1 - b, acc + s, acc + s) for s in (0, 1, 2) for b, acc in ((1.0, 90.0), (0.5, 86.0))]
    runs += [run("infobatch", 0.5, s, 0.5, 87.0 + s + 0.1 * s, 87.0 + s) for s in (0, 1, 2)]  # +1.0..+1.2: bold
    runs += [run("random", 0.5, s, 0.5, 87.0 + s, 85.0 + s) for s in (0, 1, 2)]  # test +1, validation -1: not
    with frontier.cache_path(tmp_path, "fashion").open("w") as f:
        f.writelines(json.dumps(frontier.asdict(r)) + "\n" for r in runs)
    text = frontier.summary(tmp_path, tasks=("fashion",), methods=("random", "infobatch"))
    row = next(line for line in text.splitlines() if line.startswith("| fashion |") and "(50%, 3)" in line)
    assert "| +1.00 ± 0.00 (50%, 3) |" in row and "**+1.10 ± 0.06 (50%, 3)**" in row
    assert (tmp_path / "frontier_summary.md").read_text() == text


def test_a_cached_run_made_under_another_config_or_version_is_marked_stale_and_rerun(tmp_path, capsys):
    spec = frontier.TASKS["fashion"]
    job = frontier.Job("fashion", "ted", 0.5, 0)
    today = frontier.stamped(frontier.Result("fashion", "ted", 0.5, 0, 16, 0.6, 0.5, 85.5, 86.0, 1.0,
                                             spec.fingerprint()), job, spec)  # fmt: skip
    moved = dict(today.versions, torch="0.0.1")  # the same run under another torch
    older = frontier.Result(**{**frontier.asdict(today), "versions": moved, "test_acc": 81.8,
                               "identity": frontier.run_identity(spec.fingerprint(), {}, moved)})  # fmt: skip
    unrecorded = frontier.Result(**{**frontier.asdict(today), "identity": "", "versions": {}, "seed": 1})
    with frontier.cache_path(tmp_path, "fashion").open("w") as f:
        f.writelines(json.dumps(frontier.asdict(r)) + "\n" for r in (today, older, unrecorded))
    cached = frontier.read_cache(tmp_path, "fashion", spec)
    assert not cached[job.key].stale and cached[job.key].test_acc == 85.5  # today's run wins over a later stale line
    assert cached["ted|0.5|1"].stale  # cached before runs recorded their identity
    q8 = frontier.Job("fashion", "ted_q8_norm", 0.5, 0)  # another resolved config under another label
    assert frontier.job_identity(job, spec) != frontier.job_identity(q8, spec)
    rows, _ = frontier.summarise(list(cached.values()))
    assert "† n: n of the row's runs are stale (1 of 2 in this table)" in frontier.markdown(spec, rows, {}, None)
    frontier.main(["--tasks", "fashion", "--methods", "ted", "--targets", "0.5", "--seeds", "2", "--main-seeds", "1",
                   "--report-only", "--out", str(tmp_path)])  # fmt: skip
    assert "(1 of them stale)" in capsys.readouterr().out  # the grid would make seed 1 again
