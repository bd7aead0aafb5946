"""Issue 22, item 3: one call sizes a step-counting LR schedule whether the run prunes or not, and it is the
number of optimizer steps the run takes (``accumulate_grad_batches``, ``limit_train_batches``, DDP)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import rank_results, run_worker
from steps_project import fit

SCRIPT = Path(__file__).resolve().parent / "steps_project.py"
OPTIONS = [
    {},
    {"accumulate_grad_batches": 3},
    {"limit_train_batches": 0.5},
    {"accumulate_grad_batches": 2, "limit_train_batches": 5},
    {"max_steps": 20},
]


@pytest.mark.parametrize("prune", [False, True], ids=["plain", "pruned"])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=["default", "accumulate", "limit_float", "accumulate_limit_int", "max_steps"]
)
def test_user_sizes_one_cycle_with_one_call_with_or_without_pruning(prune, options):
    """``lightning_ted.total_optimizer_steps(self.trainer)`` in configure_optimizers equals the optimizer
    steps taken, so OneCycleLR ends exactly at the run's end; no branch on pruning and no schedule warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predicted, taken, _ = fit(prune, **options)
    assert predicted == taken
    assert not [w for w in caught if "LR scheduler" in str(w.message)]


def test_pruning_takes_fewer_steps_than_full_epochs():
    """The call is not Lightning's full-data estimate under pruning: the pruned run is shorter."""
    plain, _, _ = fit(False)
    pruned, _, _ = fit(True)
    assert pruned < plain == 4 * 16  # 250 samples in batches of 16: 16 steps an epoch


def test_user_sizes_a_step_schedule_under_a_method_whose_kept_count_depends_on_scores():
    """InfoBatch keeps a score-dependent number of samples, so no step total exists before training: the call
    stops in configure_optimizers and names the way out (an epoch-interval schedule)."""
    with pytest.raises(RuntimeError, match=r"'infobatch' keeps a score-dependent number.*epoch-based"):
        fit(True, method="infobatch")


@pytest.mark.ddp
@pytest.mark.slow
@pytest.mark.parametrize("prune", ["0", "1"], ids=["plain", "pruned"])
def test_user_sizes_the_schedule_under_ddp_on_two_processes(tmp_path, prune):
    """Under DDP every rank predicts the per-rank step count it then takes (accumulation and a batch limit on);
    the pruned run's summary is printed once (rank zero)."""
    proc = run_worker(SCRIPT, tmp_path, 2, prune, 2, 0.8, extra_path=[SCRIPT.parent])
    for result in rank_results(tmp_path, 2):
        assert result["predicted"] == result["taken"]
    summaries = proc.stdout.count("lightning-ted fit summary")
    assert summaries == (1 if prune == "1" else 0), "the end-of-fit summary is printed once, by rank zero"
