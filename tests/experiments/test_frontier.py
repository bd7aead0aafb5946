"""``experiments/frontier.py``: the frontier arithmetic against hand values, the runs it reads from the command's
``runs.jsonl``, and ``--quick`` end to end through ``lightning-ted frontier``."""

from __future__ import annotations

import csv
import json
import math

import frontier
import pytest
import torch
import yaml
from conftest import requires_mnist
from frontier_modules import TaskData, flipped_share, task_config
from frontier_report import (
    MEASURE,
    TASKS,
    benchmark_method,
    fingerprints,
    markdown,
    runs_folder,
    saved_at_tolerance,
    summarise,
    summary,
    task_results,
)
from frontier_runs import command_record
from frontier_tasks import INFOBATCH_MAX_RATIO, QUICK, TARGETS, Result, schedule_ratio

from lightning_ted.frontier.command import main as command
from lightning_ted.frontier.gains import frontier_at
from lightning_ted.zoo.datasets import default_data_root


def test_frontier_interpolates_between_budget_points_and_extends_the_end_segments():
    pts = [(0.0, 90.0), (0.5, 80.0), (-0.5, 91.0)]
    assert frontier_at(pts, 0.25) == pytest.approx(85.0)
    assert frontier_at(pts, -0.25) == pytest.approx(90.5)
    assert frontier_at(pts, 0.6) == pytest.approx(78.0)  # extended beyond the cheapest budget


def test_schedule_ratio_saves_the_target_exactly_for_exact_methods_and_caps_infobatch():
    spec = TASKS["fashion"]  # 16 epochs: 1 warm-up, 2 anneal, 13 pruning epochs
    assert schedule_ratio("ted", 0.5, spec) * 13 / 16 == pytest.approx(0.5)
    r = schedule_ratio("infobatch", 0.3, spec)
    assert r * spec.infobatch_candidates * 13 / 16 == pytest.approx(0.3)
    assert schedule_ratio("infobatch", 0.7, spec) == INFOBATCH_MAX_RATIO
    with pytest.raises(ValueError, match="cannot be reached"):
        schedule_ratio("random", 0.9, spec)


def test_saved_at_tolerance_walks_the_curve_down_to_full_minus_tolerance():
    rows = [
        {"method": "ted", "saved": 0.3, "val_acc": 90.0},
        {"method": "ted", "saved": 0.5, "val_acc": 89.6},
        {"method": "ted", "saved": 0.7, "val_acc": 80.0},
    ]
    # full 90.0 at 0 saved; 89.8 is crossed halfway between 0.3 (90.0) and 0.5 (89.6)
    assert saved_at_tolerance(rows, "ted", 90.0, "val_acc") == pytest.approx(0.4)


def test_gain_is_paired_per_seed_against_that_seeds_frontier():
    def res(method, level, seed, saved, acc):
        return Result("t", method, level, seed, 4, 0.0, saved, acc, acc, 1.0)

    results = [
        res("budget", 1.0, 0, 0.0, 90.0), res("budget", 0.5, 0, 0.5, 80.0),
        res("budget", 1.0, 1, 0.0, 70.0), res("budget", 0.5, 1, 0.5, 60.0),
        res("ted", 0.5, 0, 0.5, 81.0), res("ted", 0.5, 1, 0.5, 63.0),
    ]  # fmt: skip
    rows, _ = summarise(results)
    ted = next(r for r in rows if r["method"] == "ted")
    assert ted["gain"] == pytest.approx(2.0)  # +1 and +3 against their own seed's frontier
    assert ted["gain_se"] == pytest.approx(1.0)  # sd 1.414 / sqrt(2)


def test_each_method_runs_the_half_target_on_every_seed_and_the_others_on_the_main_seeds():
    spec = TASKS["fashion"]
    calls = frontier.invocations(spec, "infobatch", TARGETS, 5, 3)
    ratios = [repr(schedule_ratio("infobatch", t, spec)) for t in (0.5, 0.3, 0.7)]
    budgets = ["--budgets", "1.5", "0.7", "0.5", "0.3"]
    assert calls == [[*budgets, "--ratios", ratios[0], "--seeds", "5"],
                     [*budgets, "--ratios", ratios[1], ratios[2], "--seeds", "3"]]  # fmt: skip
    assert frontier.invocations(spec, "ted", [0.5], 2, 1) == [
        [*budgets, "--ratios", repr(schedule_ratio("ted", 0.5, spec)), "--seeds", "2"]
    ]


@pytest.mark.slow
@requires_mnist
def test_quick_grid_runs_the_command_writes_tables_and_resumes_from_its_runs(tmp_path, capsys):
    out = tmp_path / "out"
    frontier.main(["--quick", "--tasks", "fashion", "--workers", "1", "--out", str(out)])
    runs = [json.loads(line) for line in (out / "frontier_fashion" / "runs.jsonl").read_text().splitlines()]
    methods = {"random", "infobatch", "ted", "seta"}
    assert len(runs) == 2 * (5 + len(methods))  # 5 budget points shared by the 4 method configs, 2 seeds
    assert all(r["measure"] == MEASURE and 0 <= r["extra"]["test_acc"] <= 100 for r in runs)
    assert sorted((out / "configs").glob("*.yaml")) == [out / "configs" / f"fashion_{m}.yaml" for m in sorted(methods)]
    assert {p.name for p in (out / "frontier_fashion").glob("frontier_*.md")} == {f"frontier_{m}.md" for m in methods}
    with open(out / "frontier_fashion.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["method"] for r in rows} == {"full"} | methods
    budgets = {float(r["budget"]): float(r["saved"]) for r in rows if r["method"] == "full"}
    assert budgets == pytest.approx({1.5: -0.5, 1.0: 0.0, 0.7: 1 / 3, 0.5: 0.5, 0.3: 2 / 3})  # 9, 6, 4, 3, 2 of 6
    for r in rows:
        if r["method"] in ("random", "ted"):
            assert float(r["saved"]) == pytest.approx(0.5, abs=0.01)
        if r["method"] != "full":
            assert r["gain_se"] not in ("", "nan") and float(r["speedup"]) > 0 and r["stale"] == "0"
    text = (out / "frontier_fashion.md").read_text()
    assert "Convergence check" in text and "| ted |" in text and "†" not in text
    assert (out / "frontier_fashion.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    frontier.main(["--quick", "--tasks", "fashion", "--workers", "1", "--out", str(out)])  # all cached
    assert capsys.readouterr().out.count("0 to train") == len(methods)
    assert len((out / "frontier_fashion" / "runs.jsonl").read_text().splitlines()) == len(runs)


@pytest.mark.slow
def test_gpu_script_runs_its_whole_grid_through_the_command_at_tiny_size_on_cpu(tmp_path):
    """``frontier_gpu.py --tiny``: the ResNet-9 config, bf16 autocast, uint8 data resident on the (here CPU)
    device, every budget point and method at 50/70%; the table names the model and the command."""
    import frontier_gpu

    if not (default_data_root() / "CIFAR-10" / "cifar10_train.npz").exists():
        pytest.skip("shared/data/CIFAR-10 is not present")
    frontier_gpu.main(["--tiny", "--seeds", "1", "--out", str(tmp_path)])
    runs = [json.loads(x) for x in (tmp_path / "frontier_cifar10_gpu" / "runs.jsonl").read_text().splitlines()]
    spec = QUICK["cifar10_gpu"]  # the tiny size: InfoBatch's ratio caps at 0.9 for both targets
    pairs = {(m, schedule_ratio(m, t, spec)) for m in frontier_gpu.METHODS_GPU for t in frontier_gpu.TARGETS_GPU}
    assert len(runs) == 5 + len(pairs) and len(pairs) >= 5
    assert {r["method"] for r in runs} == {"full", *frontier_gpu.METHODS_GPU}
    assert all(r["measure"] == "frontier_gpu.measure" and 0.0 <= r["extra"]["test_acc"] <= 100.0 for r in runs)
    text = (tmp_path / "frontier_cifar10_gpu.md").read_text()
    assert "ResNet-9" in text and "frontier_gpu.py --tiny" in text and "| ted | 0.7 (r=" in text


def test_flipped_share_counts_pruned_passes_on_flipped_labels_and_is_reported_for_noisy_tasks():
    flipped = torch.tensor([True, False, False, False])
    assert flipped_share(flipped, torch.tensor([3, 1, 0, 0])) == pytest.approx(0.75)
    assert math.isnan(flipped_share(flipped, torch.zeros(4, dtype=torch.int64)))  # nothing pruned

    def res(method, level, seed, saved, acc, extra=None):
        return Result("noisy_fashion", method, level, seed, 4, 0.0, saved, acc, acc, 1.0, "", extra or {})

    results = [res("budget", 1.0, 0, 0.0, 80.0), res("budget", 0.5, 0, 0.5, 78.0),
               res("ted", 0.5, 0, 0.5, 79.0, {"flipped_share": 0.3}), res("random", 0.5, 0, 0.5, 78.0)]  # fmt: skip
    rows, conv = summarise(results)
    text = markdown(TASKS["noisy_fashion"], rows, conv, None)
    assert "| ted | 0.5 | 50.0% | 1 | 30.0% | 79.00 |" in text  # runs without the measure get no row
    assert "| random | 0.5 | 50.0% | 0 |" not in text


def test_summary_bolds_only_gains_clearing_two_standard_errors_on_test_and_validation(tmp_path):
    runs = [("budget", b, s, 1 - b, acc + s, acc + s) for s in (0, 1, 2) for b, acc in ((1.0, 90.0), (0.5, 86.0))]
    runs += [("infobatch", 0.5, s, 0.5, 87.0 + s + 0.1 * s, 87.0 + s) for s in (0, 1, 2)]  # +1.0..+1.2: bold
    runs += [("random", 0.5, s, 0.5, 87.0 + s, 85.0 + s) for s in (0, 1, 2)]  # test +1, validation -1: not
    folder = runs_folder(tmp_path, "fashion")
    folder.mkdir()
    (folder / "runs.jsonl").write_text("".join(json.dumps(command_record("fashion", *r)) + "\n" for r in runs))
    text = summary(tmp_path, tasks=("fashion",), methods=("random", "infobatch"))
    row = next(line for line in text.splitlines() if line.startswith("| fashion |") and "(50%, 3)" in line)
    assert "| +1.00 ± 0.00 (50%, 3) |" in row and "**+1.10 ± 0.06 (50%, 3)**" in row
    assert (tmp_path / "frontier_summary.md").read_text() == text


def test_a_run_recorded_under_another_config_or_version_is_marked_stale_and_trained_again(tmp_path, capsys):
    spec = TASKS["fashion"]
    today = command_record("fashion", "ted", 0.5, 0, 0.5, 85.5, 86.0)
    older = command_record("fashion", "ted", 0.5, 0, 0.5, 81.8, 86.0, stale=True)  # e.g. another torch
    unmeasured = {k: v for k, v in command_record("fashion", "ted", 0.5, 2, 0.5, 80.0, 80.0).items() if k != "extra"}
    lines = [today, older, command_record("fashion", "ted", 0.5, 1, 0.5, 84.0, 85.0, stale=True), unmeasured]
    folder = runs_folder(tmp_path, "fashion")
    folder.mkdir()
    (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    results = {(r.method, r.seed): r for r in task_results(tmp_path, spec)}
    assert set(results) == {("ted", 0), ("ted", 1)}  # a run without the benchmark's measure is not read
    assert not results["ted", 0].stale and results["ted", 0].test_acc == 85.5  # today's run wins over a later stale one
    assert results["ted", 1].stale and results["ted", 0].level == 0.5 and results["ted", 0].ratio == today["level"]
    rows, _ = summarise(list(results.values()))
    assert "† n: n of the row's runs are stale (1 of 2 in this table)" in markdown(spec, rows, {}, None)
    config = frontier.write_method_config(spec, "ted", tmp_path / "configs")
    (args,) = frontier.invocations(spec, "ted", [0.5], 2, 1)
    capsys.readouterr()
    assert command(["--config", str(config), *args, "--measure", MEASURE, "--out", str(folder), "--report-only"]) == 0
    assert "1 of 12 runs cached, 11 to train" in capsys.readouterr().out  # seed 1 (and the budgets) run again


def test_a_tedvariant_run_is_read_under_its_variant_name():
    record = command_record("fashion", "ted_gradnorm", 0.3, 0, 0.3, 80.0, 80.0)
    assert record["method_config"] == {"class_path": "lightning_ted.research.TEDVariant",
                                       "init_args": {"score": "grad_norm"}}  # fmt: skip
    assert benchmark_method(record) == "ted_gradnorm"
    assert benchmark_method(command_record("fashion", "budget", 1.0, 0, 0.0, 80.0, 80.0)) == "budget"


@pytest.mark.parametrize("task", ["fashion", "cifar10_gpu"])
def test_the_report_fingerprints_the_config_the_driver_writes_on_the_tasks_own_accelerator(task, tmp_path):
    """The GPU task's config says gpu: the report must not fingerprint it as a CPU config (every run stale)."""
    spec = TASKS[task]
    path = frontier.write_method_config(spec, "ted", tmp_path)
    written = task_config(spec, yaml.safe_load(path.read_text()))
    assert (written.fingerprint(), written.full_fingerprint()) == fingerprints(spec, "ted")
    assert yaml.safe_load(path.read_text())["trainer"]["accelerator"] == ("gpu" if task == "cifar10_gpu" else "cpu")


def test_a_config_written_for_other_task_settings_is_refused_by_its_data():
    """The task's sizes and batch live in frontier_tasks.py, not the YAML: the written config names their
    fingerprint, so an edited spec is a new config (its runs are not cached ones) and an old config stops."""
    cfg = frontier.method_config(TASKS["fashion"], "ted")
    assert cfg["data"]["init_args"]["datamodule"]["init_args"]["spec"] == TASKS["fashion"].fingerprint()
    with pytest.raises(ValueError, match="rerun experiments/frontier.py, which rewrites the config"):
        TaskData("fashion", spec="0000000000")


def test_a_run_whose_capped_ratio_serves_two_targets_counts_for_both_and_other_ratios_are_named(tmp_path, capsys):
    spec = TASKS["fashion60k"]  # 6 epochs: InfoBatch's ratio caps at 0.9 for both 50% and 70%
    assert schedule_ratio("infobatch", 0.5, spec) == schedule_ratio("infobatch", 0.7, spec) == INFOBATCH_MAX_RATIO
    other = {**command_record("fashion60k", "ted", 0.3, 0, 0.3, 80.0, 80.0), "level": 0.123}
    folder = runs_folder(tmp_path, "fashion60k")
    folder.mkdir()
    lines = [command_record("fashion60k", "infobatch", 0.5, 0, 0.5, 85.0, 86.0), other]
    (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    results = task_results(tmp_path, spec)
    assert sorted((r.method, r.level) for r in results) == [("infobatch", 0.5), ("infobatch", 0.7)]
    assert "1 runs of fashion60k are at ratios no target of [0.3, 0.5, 0.7] gives" in capsys.readouterr().out
