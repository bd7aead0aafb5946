"""Pruning schedules against the closed form of DESIGN.md section 2.

With ``E`` epochs, ``W`` warm-up epochs and ``A = round(anneal * E)`` anneal epochs there are
``T = E - W - A`` pruning epochs; epoch ``e`` (0-based) is pruning epoch ``t = e - W + 1``. Inside
``1 <= t <= T`` the roller coaster keeps ``(1 - s) ** ((t / T) ** beta)``, the constant schedule prunes
``s`` and the linear one ``s * t / T``; every other epoch prunes nothing.
"""

from __future__ import annotations

import re

import pytest

from lightning_ted.core.schedules import ConstantSchedule, LinearSchedule, RollerCoasterSchedule

# (max_epochs E, warmup W, anneal fraction, anneal epochs A worked out by hand). No combination has
# anneal * E exactly on .5, so A does not depend on the rounding convention.
RUNS = [
    (8, 1, 0.125, 1),  # T = 6
    (10, 2, 0.2, 2),  # T = 6
    (20, 1, 0.1, 2),  # T = 17
    (5, 0, 0.0, 0),  # T = 5, no warm-up, no anneal
    (30, 3, 0.125, 4),  # 3.75 -> 4, T = 23
    (12, 4, 0.3, 4),  # 3.6 -> 4, T = 4
    (10, 1, 0.125, 1),  # 1.25 -> 1, T = 8
    (16, 2, 0.15, 2),  # 2.4 -> 2, T = 12
]


def _window(e: int, w: int, a: int):
    """(T, list of (epoch, t) pairs over all epochs; t is None outside the pruning window)."""
    big_t = e - w - a
    pairs = []
    for epoch in range(e):
        t = epoch - w + 1
        pairs.append((epoch, t if 1 <= t <= big_t else None))
    return big_t, pairs


def _roller_kept(s: float, beta: float, t: int, big_t: int) -> float:
    return (1.0 - s) ** ((t / big_t) ** beta)


@pytest.mark.parametrize("e, w, anneal, a", RUNS)
@pytest.mark.parametrize("s, beta", [(0.5, 0.5), (0.3, 1.0), (0.8, 0.25), (0.7, 2.0), (0.0, 0.5)])
def test_roller_coaster_matches_closed_form(e, w, anneal, a, s, beta):
    sched = RollerCoasterSchedule(ratio=s, beta=beta, warmup_epochs=w, anneal=anneal, max_epochs=e)
    big_t, pairs = _window(e, w, a)
    assert sched.anneal_epochs == a
    assert sched.pruning_epochs == big_t
    for epoch, t in pairs:
        if t is None:
            assert sched.prune_ratio(epoch) == 0.0, (epoch, "warm-up/anneal epochs train on everything")
            assert sched.kept_fraction(epoch) == 1.0
        else:
            kept = _roller_kept(s, beta, t, big_t)
            assert sched.kept_fraction(epoch) == pytest.approx(kept, abs=1e-12), (epoch, t)
            assert sched.prune_ratio(epoch) == pytest.approx(1.0 - kept, abs=1e-12), (epoch, t)
    # the last pruning epoch keeps exactly 1 - s
    last = w + big_t - 1
    assert sched.kept_fraction(last) == pytest.approx(1.0 - s, abs=1e-12)
    # the epoch after it is the first anneal epoch (or past the end)
    assert sched.prune_ratio(last + 1) == 0.0
    # warm-up epochs prune nothing
    assert all(sched.prune_ratio(epoch) == 0.0 for epoch in range(w))
    # epochs outside the run prune nothing either
    assert sched.prune_ratio(e) == 0.0 and sched.prune_ratio(e + 5) == 0.0


@pytest.mark.parametrize("s", [0.3, 0.5, 0.9])
def test_small_beta_prunes_more_early(s):
    e, w, anneal = 20, 1, 0.1  # T = 17
    fast = RollerCoasterSchedule(ratio=s, beta=0.5, warmup_epochs=w, anneal=anneal, max_epochs=e)
    even = RollerCoasterSchedule(ratio=s, beta=1.0, warmup_epochs=w, anneal=anneal, max_epochs=e)
    big_t = fast.pruning_epochs
    assert big_t == 17
    for t in range(1, big_t):
        epoch = w + t - 1
        assert fast.prune_ratio(epoch) > even.prune_ratio(epoch) + 1e-6, t
    last = w + big_t - 1
    assert fast.prune_ratio(last) == pytest.approx(even.prune_ratio(last), abs=1e-12)
    assert fast.prune_ratio(last) == pytest.approx(s, abs=1e-12)
    # beta = 1 is exactly geometric: kept = (1 - s) ** (t / T)
    assert even.kept_fraction(w) == pytest.approx((1 - s) ** (1 / big_t), abs=1e-12)


@pytest.mark.parametrize("beta", [0.25, 0.5, 1.0, 3.0])
def test_roller_coaster_is_monotone_in_the_window(beta):
    sched = RollerCoasterSchedule(ratio=0.6, beta=beta, warmup_epochs=2, anneal=0.2, max_epochs=16)
    ratios = [sched.prune_ratio(2 + t - 1) for t in range(1, sched.pruning_epochs + 1)]
    assert all(0.0 < r <= 0.6 + 1e-12 for r in ratios)
    assert all(b > a for a, b in zip(ratios, ratios[1:], strict=False))


@pytest.mark.parametrize("e, w, anneal, a", RUNS)
@pytest.mark.parametrize("s", [0.2, 0.5, 0.75])
def test_constant_and_linear_match_closed_form(e, w, anneal, a, s):
    const = ConstantSchedule(ratio=s, warmup_epochs=w, anneal=anneal, max_epochs=e)
    lin = LinearSchedule(ratio=s, warmup_epochs=w, anneal=anneal, max_epochs=e)
    big_t, pairs = _window(e, w, a)
    assert const.pruning_epochs == lin.pruning_epochs == big_t
    for epoch, t in pairs:
        if t is None:
            assert const.prune_ratio(epoch) == 0.0
            assert lin.prune_ratio(epoch) == 0.0
        else:
            assert const.prune_ratio(epoch) == pytest.approx(s, abs=1e-12)
            assert lin.prune_ratio(epoch) == pytest.approx(s * t / big_t, abs=1e-12)
    assert lin.prune_ratio(w + big_t - 1) == pytest.approx(s, abs=1e-12)


def test_no_pruning_window_prunes_nothing():
    # E = 2, W = 1, A = round(0.5 * 2) = 1: T = 0
    for sched in (
        RollerCoasterSchedule(ratio=0.5, warmup_epochs=1, anneal=0.5, max_epochs=2),
        ConstantSchedule(ratio=0.5, warmup_epochs=1, anneal=0.5, max_epochs=2),
        LinearSchedule(ratio=0.5, warmup_epochs=1, anneal=0.5, max_epochs=2),
    ):
        assert sched.pruning_epochs == 0
        assert [sched.prune_ratio(epoch) for epoch in range(3)] == [0.0, 0.0, 0.0]
    # warm-up longer than the run
    sched = ConstantSchedule(ratio=0.5, warmup_epochs=10, anneal=0.0, max_epochs=4)
    assert sched.pruning_epochs == 0
    assert all(sched.prune_ratio(epoch) == 0.0 for epoch in range(12))


def test_bind_later_equals_bound_at_construction():
    late = RollerCoasterSchedule(ratio=0.5, beta=0.5, warmup_epochs=1, anneal=0.125)
    assert late.max_epochs is None
    late.bind(8)
    early = RollerCoasterSchedule(ratio=0.5, beta=0.5, warmup_epochs=1, anneal=0.125, max_epochs=8)
    assert [late.prune_ratio(epoch) for epoch in range(8)] == [early.prune_ratio(epoch) for epoch in range(8)]
    late.bind(8)  # binding again to the same length is fine
    assert late.max_epochs == 8


# ---------------------------------------------------------------------------------------------- errors
SCHEDULES = [RollerCoasterSchedule, ConstantSchedule, LinearSchedule]


@pytest.mark.parametrize("cls", SCHEDULES)
@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_ratio_outside_unit_interval_is_rejected(cls, ratio):
    with pytest.raises(ValueError, match="ratio") as info:
        cls(ratio=ratio)
    assert repr(float(ratio)) in str(info.value)


@pytest.mark.parametrize("beta", [0.0, -0.5, float("nan"), float("inf")])
def test_nonpositive_beta_is_rejected(beta):
    with pytest.raises(ValueError, match="beta"):
        RollerCoasterSchedule(ratio=0.5, beta=beta)


@pytest.mark.parametrize("cls", SCHEDULES)
def test_bind_to_another_run_length_is_rejected(cls):
    sched = cls(ratio=0.5, max_epochs=8)
    with pytest.raises(ValueError, match=r"max_epochs=8") as info:
        sched.bind(10)
    assert re.search(r"\b10\b", str(info.value))
    assert sched.max_epochs == 8


@pytest.mark.parametrize("bad", [None, 0, -3])
def test_bind_needs_a_finite_positive_length(bad):
    with pytest.raises(ValueError, match="max_epochs"):
        ConstantSchedule(ratio=0.5).bind(bad)


@pytest.mark.parametrize("cls", SCHEDULES)
def test_unbound_schedule_raises(cls):
    sched = cls(ratio=0.5)
    with pytest.raises(RuntimeError, match="does not know the run length yet"):
        sched.prune_ratio(1)
    with pytest.raises(RuntimeError):
        _ = sched.pruning_epochs
    with pytest.raises(RuntimeError):
        sched.kept_fraction(3)
    with pytest.raises(RuntimeError):
        _ = sched.anneal_epochs


@pytest.mark.parametrize("cls", SCHEDULES)
def test_unbound_schedule_raises_in_warmup_epochs_too(cls):
    sched = cls(ratio=0.5, warmup_epochs=1)
    with pytest.raises(RuntimeError, match="does not know the run length yet"):
        sched.prune_ratio(0)


@pytest.mark.parametrize("kwargs", [{"warmup_epochs": -1}, {"warmup_epochs": 1.5}, {"anneal": 1.0}, {"anneal": -0.1}])
def test_bad_warmup_or_anneal_is_rejected(kwargs):
    with pytest.raises(ValueError):
        ConstantSchedule(ratio=0.5, **kwargs)
