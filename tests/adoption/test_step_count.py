"""Issue 22, item 3: one call sizes a step-counting LR schedule whether the run prunes or not, and it is the
number of optimizer steps the run takes (``accumulate_grad_batches``, ``limit_train_batches``, DDP)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import rank_results, run_worker
from lightning.pytorch.callbacks import Callback
from steps_project import fit

from lightning_ted.adapters.fit_start import trainer_limits
from lightning_ted.core.run_plan import StepCountWarning, epoch_plans
from lightning_ted.methods import METHODS

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


class KeptCounts(Callback):
    """The samples pruning kept each epoch (listed after the pruning callback, so the epoch's set is made)."""

    def __init__(self) -> None:
        self.kept: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.kept.append(len(trainer.datamodule.current_selection))


EXACT_METHODS = sorted(name for name, cls in METHODS.items() if cls.exact_kept_count)


@pytest.mark.parametrize("warmup_epochs", [0, 1], ids=["no_warmup", "default_warmup"])
@pytest.mark.parametrize("method", EXACT_METHODS)
def test_user_sizes_one_cycle_for_a_method_with_a_known_kept_count_with_or_without_warmup(method, warmup_epochs):
    """Issue 29: with ``warmup_epochs=0`` RS2, UCB and epsilon-greedy prune epoch 0 too (they need no score),
    where the plan assumed a full first epoch (planned 47, taken 41). Planned equals taken for every method
    whose kept count is known in advance, with and without a warm-up epoch, and each epoch keeps what the
    plan says."""
    kept = KeptCounts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predicted, taken, trainer = fit(True, method=method, warmup_epochs=warmup_epochs, callbacks=[kept])
    assert predicted == taken
    dm = trainer.datamodule
    plans = epoch_plans(dm.run, trainer_limits(trainer), dm.train_data())
    assert kept.kept == [p.kept for p in plans] == [p.most_kept for p in plans]
    assert not [w for w in caught if issubclass(w.category, StepCountWarning) or "LR scheduler" in str(w.message)]


@pytest.mark.parametrize("limit", [0.3, 0.4])
def test_user_sizes_one_cycle_under_limit_train_batches_with_ted_and_it_runs_to_the_end(limit):
    """Issue 29: ``limit_train_batches`` leaves the samples its cut epochs never load unscored, and TED never
    drops an unscored sample, so later epochs keep more than a plan with every sample scored says: OneCycleLR
    raised "Tried to step 13 times" at 0.3. The plan bounds what was trained before each epoch: at 0.3 the
    count is exact; at 0.4 epoch 2 keeps 106 to 115 samples (2 or 3 batches), so the call returns the most
    and says so. Either way the schedule runs to the end, and every epoch keeps a count inside the plan."""
    kept = KeptCounts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predicted, taken, trainer = fit(True, limit_train_batches=limit, callbacks=[kept])
    dm = trainer.datamodule
    plans = epoch_plans(dm.run, trainer_limits(trainer), dm.train_data())
    for plan, count in zip(plans, kept.kept, strict=True):
        assert plan.kept <= count <= plan.most_kept
    fewest, most = sum(p.batches for p in plans), sum(p.most_batches for p in plans)
    assert predicted == most and fewest <= taken <= most
    inexact = [str(w.message) for w in caught if issubclass(w.category, StepCountWarning)]
    if limit == 0.3:
        assert predicted == taken == fewest and not inexact
    else:
        assert fewest < most and len(inexact) == 1
        assert f"between {fewest} and {most} optimizer steps" in inexact[0]
        assert "limit_train_batches=0.4" in inexact[0] and "epoch 2 keeps more samples" in inexact[0]
