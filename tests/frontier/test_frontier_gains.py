"""The frontier's arithmetic against hand computations, and the LR-horizon probe on real schedulers."""

from __future__ import annotations

import os

import pytest
import torch

from lightning_ted.frontier import FrontierRefusal, frontier_at, summarise, verdict
from lightning_ted.frontier.command import default_threads
from lightning_ted.frontier.gains import advice
from lightning_ted.frontier.horizon import check_follows, lr_trace
from lightning_ted.frontier.plan import budget_epochs, plan_runs
from lightning_ted.frontier.report import markdown
from lightning_ted.frontier.targets import expected_saving, ratio_for_target


def rec(method, level, seed, saved, metric, fit=10.0, epochs=4):
    return dict(method=method, level=level, seed=seed, epochs=epochs, saved=saved, metric=metric, fit_seconds=fit)


def two_seeds(ted_metrics, ted_saved=0.25):
    """Seed 0: frontier 0.90 (0 saved) .. 0.80 (half saved); seed 1: 0.70 .. 0.60; TED at ``ted_saved``."""
    runs = [rec("full", 1.0, 0, 0.0, 0.90), rec("full", 0.5, 0, 0.5, 0.80, fit=5.0, epochs=2)]
    runs += [rec("full", 1.0, 1, 0.0, 0.70), rec("full", 0.5, 1, 0.5, 0.60, fit=5.0, epochs=2)]
    return runs + [rec("ted", 0.5, s, ted_saved, m, fit=4.0) for s, m in enumerate(ted_metrics)]


def test_frontier_interpolates_inside_and_extends_the_end_segments():
    pts = [(0.0, 90.0), (0.5, 80.0), (-0.5, 91.0)]
    assert frontier_at(pts, 0.25) == pytest.approx(85.0)
    assert frontier_at(pts, -0.25) == pytest.approx(90.5)
    assert frontier_at(pts, 0.6) == pytest.approx(78.0)


def test_gain_is_paired_per_seed_against_that_seeds_frontier_with_its_standard_error():
    rows = summarise(two_seeds([0.86, 0.68]))
    ted = next(r for r in rows if r["method"] == "ted")
    # by hand: frontiers at 25% saved are 0.85 and 0.65; gains +0.01 and +0.03; mean 0.02, sd 0.01414, SE 0.01
    assert ted["gain"] == pytest.approx(0.02) and ted["gain_se"] == pytest.approx(0.01)
    assert ted["metric"] == pytest.approx(0.77) and ted["metric_se"] == pytest.approx(0.09)
    assert ted["speedup"] == pytest.approx(2.5) and not ted["extrapolated"]  # 10 s / 4 s on both seeds
    assert [r["method"] for r in rows] == ["full", "full", "ted"] and rows[0]["epochs"] == 4


def test_mode_min_counts_a_lower_metric_as_the_gain():
    rows = summarise(two_seeds([0.86, 0.68]), mode="min")
    assert next(r for r in rows if r["method"] == "ted")["gain"] == pytest.approx(-0.02)


def test_a_saving_beyond_the_cheapest_budget_is_marked_extrapolated():
    rows = summarise(two_seeds([0.80, 0.60], ted_saved=0.6))
    ted = next(r for r in rows if r["method"] == "ted")
    assert ted["extrapolated"] and ted["gain"] == pytest.approx(0.02)  # frontier 0.78 / 0.58 at 60% saved


def test_verdict_names_a_gain_only_when_it_clears_two_standard_errors():
    assert verdict(summarise(two_seeds([0.86, 0.68])), "val_acc").startswith("not above training for fewer")
    line = verdict(summarise(two_seeds([0.87, 0.675])), "val_acc")  # +0.02, +0.025: 0.0225 ± 0.0025
    assert line.startswith(
        "ted at 25% saved: +0.0225 ± 0.0025 val_acc over training fewer epochs (more than 2 SE above it, 2 seeds)"
    )
    one = verdict(summarise([r for r in two_seeds([0.86, 0.68]) if r["seed"] == 0]), "val_acc")
    assert "no standard error" in one


def test_budgets_that_round_to_the_same_epochs_run_once_and_zero_epochs_is_refused():
    assert budget_epochs([0.5, 0.7], 2) == {1.0: 2, 0.5: 1}  # 0.7 of 2 is also 1 epoch
    with pytest.raises(FrontierRefusal, match="budget 0.2 of trainer.max_epochs=2"):
        budget_epochs([0.2], 2)
    runs = plan_runs(4, [0.5], ["ted", "random"], [0.3, 0.5], 2)
    assert [r.label for r in runs[:6]] == ["full b=0.5", "full b=1.0", "ted r=0.3", "ted r=0.5", "random r=0.3",
                                           "random r=0.5"]  # fmt: skip
    assert len(runs) == 12 and {r.seed for r in runs[6:]} == {1}


def _sgd():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def test_the_horizon_probe_leaves_the_schedule_as_it_found_it():
    sched = torch.optim.lr_scheduler.OneCycleLR(_sgd(), max_lr=0.1, total_steps=20)
    before = (sched.last_epoch, sched.optimizer.param_groups[0]["lr"], sched.optimizer.param_groups[0]["momentum"])
    lrs = lr_trace(sched, 40)
    assert len(lrs) == 21 and lrs[-2] == min(lrs)  # OneCycleLR stops stepping past its total_steps
    after = (sched.last_epoch, sched.optimizer.param_groups[0]["lr"], sched.optimizer.param_groups[0]["momentum"])
    assert after == before


def test_a_schedule_ending_with_the_run_passes_and_one_sized_for_a_longer_run_is_refused():
    check_follows(torch.optim.lr_scheduler.CosineAnnealingLR(_sgd(), T_max=10), 10, "epoch", 10)
    check_follows(torch.optim.lr_scheduler.OneCycleLR(_sgd(), max_lr=0.1, total_steps=50), 50, "step", 5)
    check_follows(torch.optim.lr_scheduler.MultiStepLR(_sgd(), milestones=[5, 8]), 10, "epoch", 10)
    check_follows(
        torch.optim.lr_scheduler.ConstantLR(_sgd(), factor=1.0), 10, "epoch", 10
    )  # no decay: nothing to follow
    with pytest.raises(FrontierRefusal, match=r"CosineAnnealingLR.*this run is 5 epochs long.*max_epochs=5"):
        check_follows(torch.optim.lr_scheduler.CosineAnnealingLR(_sgd(), T_max=10), 5, "epoch", 5)
    with pytest.raises(FrontierRefusal, match="StepLR"):
        check_follows(torch.optim.lr_scheduler.StepLR(_sgd(), step_size=1, gamma=0.9), 10, "epoch", 10)


def test_a_saving_target_becomes_the_ratio_the_schedule_needs_and_an_unreachable_one_is_refused():
    constant = {"class_path": "lightning_ted.ConstantSchedule", "init_args": {"warmup_epochs": 1, "anneal": 0.125}}
    assert ratio_for_target(constant, 0.5, 16) == pytest.approx(0.5 * 16 / 13, abs=1e-4)  # 13 pruning epochs
    coaster = {"class_path": "lightning_ted.RollerCoasterSchedule", "init_args": {"beta": 0.1}}
    r = ratio_for_target(coaster, 0.3, 10)
    assert expected_saving(coaster, r, 10) == pytest.approx(0.3, abs=1e-3)
    assert ratio_for_target(None, 0.3, 10) == ratio_for_target({"class_path": "lightning_ted.RollerCoasterSchedule"},
                                                               0.3, 10)  # fmt: skip
    with pytest.raises(FrontierRefusal, match=r"--targets 0.9: the config's schedule saves at most"):
        ratio_for_target(constant, 0.9, 16)


# ------------------------------------------------------------------ issue 29: the report's reading of the runs


def test_a_frontier_with_two_runs_at_the_cheapest_saving_averages_them_instead_of_dividing_by_zero():
    assert frontier_at([(0.0, 0.9), (0.5, 0.8), (0.5, 0.7)], 0.75) == pytest.approx(0.675)  # via (0.5, 0.75)


def test_a_speedup_above_what_the_saving_allows_is_flagged_as_noise():
    """Half the epochs fitting in under a third of the time (a loaded machine): 3.33x against an ideal 2x."""
    runs = two_seeds([0.86, 0.68])  # full b=1.0 10 s, b=0.5 5 s (2x: at the ideal), TED 4 s at 25% saved
    runs = [{**r, "fit_seconds": 3.0} if r["method"] == "full" and r["level"] == 0.5 else r for r in runs]
    rows = summarise(runs)
    half = next(r for r in rows if r["level"] == 0.5 and r["method"] == "full")
    ted = next(r for r in rows if r["method"] == "ted")
    assert half["speedup_noise"] and ted["speedup_noise"]  # TED: 2.5x with 25% saved (ideal 1.33x)
    assert not rows[0]["speedup_noise"]
    head = dict(config="my.yaml", metric="val_acc", mode="max", max_epochs=4, command="lightning-ted frontier")
    text = markdown(rows, head, verdict(rows, "val_acc"), None)
    assert "| 3.33x (above ideal 2.00x) |" in text and "| 2.50x (above ideal 1.33x) |" in text
    assert "measurement noise" in text


def test_an_inconclusive_verdict_says_how_many_seeds_and_which_ratios_next():
    """Gains +0.005 and +0.03: 0.0175 ± 0.0125 (SD 0.0177). More than 2 SE needs n > (2 SD / gain)^2 = 4.1."""
    rows = summarise(two_seeds([0.855, 0.68]))
    assert verdict(rows, "val_acc").startswith("not above training for fewer epochs by more than 2 SE")
    lines = advice(rows, "val_acc")
    nxt = next(line for line in lines if line.startswith("Next:"))
    assert "--seeds 5 --methods ted --ratios 0.5" in nxt and "cached" in nxt


def test_full_data_still_rising_between_the_longest_budget_and_e_is_warned_as_not_converged():
    """Seed means: 0.80 at E, 0.70 at half of E, 10 points apart: the frontier is read where training still
    gains, so the answer holds for this E only."""
    lines = advice(summarise(two_seeds([0.86, 0.675])), "val_acc")
    warning = next(line for line in lines if line.startswith("Not converged:"))
    assert "+10.00 points" in warning and "b=0.5" in warning and "trainer.max_epochs" in warning
    flat = [{**r, "metric": 0.80} if r["method"] == "full" else r for r in two_seeds([0.86, 0.675])]
    assert not any(line.startswith("Not converged:") for line in advice(summarise(flat), "val_acc"))


def test_default_threads_follow_omp_num_threads_else_the_cpus_shared_by_the_workers(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(2) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads(1) == len(os.sched_getaffinity(0)) and default_threads(10**6) == 1
