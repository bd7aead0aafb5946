"""Soft selection of DESIGN.md section 2: kept counts, candidate sets, unbiasedness, seeding, ties."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from lightning_ted.core.selection import Selection, epoch_generator, kth_smallest, lowest_k_mask, random_drop_selection
from lightning_ted.methods import TED


def _distinct_scores(n: int, seed: int) -> torch.Tensor:
    """A random permutation of 0..n-1 as float scores: no ties, so "the m lowest" is unambiguous."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).float()


def _dropped(sel: Selection) -> set[int]:
    return set(range(sel.num_samples)) - set(sel.indices.tolist())


def _check_well_formed(sel: Selection, n: int) -> None:
    idx = sel.indices.tolist()
    assert len(set(idx)) == len(idx), "kept indices repeat"
    assert all(0 <= i < n for i in idx)
    assert sel.num_samples == n
    assert sel.weights.shape == (len(sel),)
    positions = torch.arange(len(sel))
    torch.testing.assert_close(sel.weight_at(positions), sel.weights, rtol=0, atol=0)
    perm = torch.randperm(len(sel), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sel.weight_at(perm), sel.weights[perm], rtol=0, atol=0)
    assert sel.actual_ratio == pytest.approx(1 - len(sel) / n)


# ------------------------------------------------------------------------------- (a) kept counts
@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("q", [0.2, 0.5, 1.0])
def test_kept_count_is_n_minus_round_pn(n, p, q):
    sel = random_drop_selection(_distinct_scores(n, 1), p, q, epoch_generator(0, 1))
    _check_well_formed(sel, n)
    # |kept - (N - pN)| <= 1/2: exactly round(pN) samples are dropped (either rounding of a .5 tie is fine)
    assert abs(len(sel) - (n - p * n)) <= 0.5 + 1e-9, (len(sel), n, p)
    assert sel.target_ratio == p


# ------------------------------------------------------------------------------- (b) candidates
CANDIDATE_CASES = [  # (N, p, q) with p N an integer, so round(pN) = pN
    (100, "0.3", "0.5"),
    (100, "0.2", "0.25"),
    (200, "0.1", "0.3"),
    (50, "0.4", "0.8"),
    (64, "0.25", "1.0"),  # hard pruning: exactly the lowest pN are dropped
    (100, "0.7", "0.5"),  # p > q: every sample is a candidate
    (30, "0.6", "0.6"),
]


def _spec_candidates(n: int, p: str, q: str) -> int:
    """min(N, ceil(p N / q)) in exact arithmetic (no float noise such as 0.3 * 100 = 30.000000000000004)."""
    return min(n, math.ceil(Fraction(p) * n / Fraction(q)))


@pytest.mark.parametrize("n, p, q", CANDIDATE_CASES)
def test_dropped_samples_are_among_the_lowest_candidates(n, p, q):
    scores = _distinct_scores(n, 2)
    m = _spec_candidates(n, p, q)
    lowest = set(torch.argsort(scores)[:m].tolist())
    n_drop = int(Fraction(p) * n)
    ever_dropped: set[int] = set()
    for epoch in range(40):
        sel = random_drop_selection(scores, float(p), float(q), epoch_generator(3, epoch))
        dropped = _dropped(sel)
        assert len(dropped) == n_drop
        assert dropped <= lowest, sorted(dropped - lowest)
        ever_dropped |= dropped
        # weights: 1 outside the candidates, 1 / (1 - q') on kept candidates, q' = dropped / candidates
        q_eff = n_drop / m
        for i, wt in zip(sel.indices.tolist(), sel.weights.tolist(), strict=True):
            want = 1.0 if i not in lowest or q_eff == 1 else 1.0 / (1.0 - q_eff)
            assert wt == pytest.approx(want, rel=1e-6), (i, wt, want)
    # hard pruning drops exactly the lowest; soft pruning drops every candidate in some of the 40 epochs
    assert ever_dropped == lowest


def test_candidate_count_comes_from_the_integer_drop_count():
    """Candidates are ceil(round(pN) / q) (documented deviation from DESIGN.md's ceil(pN / q))."""
    n, p, q = 100, "0.036", "0.25"  # pN = 3.6 -> 4 dropped; 4 / 0.25 = 16 candidates (pN / q would give 15)
    scores = _distinct_scores(n, 4)
    order = torch.argsort(scores)
    lowest16 = set(order[:16].tolist())
    ever_dropped: set[int] = set()
    for epoch in range(60):
        sel = random_drop_selection(scores, float(p), float(q), epoch_generator(5, epoch))
        dropped = _dropped(sel)
        assert len(dropped) == 4 and dropped <= lowest16
        assert sel.weight == pytest.approx(1 / (1 - 4 / 16))
        ever_dropped |= dropped
    assert int(order[15]) in ever_dropped  # the 16th-lowest really is a candidate


def test_unscored_samples_are_never_dropped():
    n = 120
    scores = _distinct_scores(n, 5)
    unscored = torch.zeros(n, dtype=torch.bool)
    unscored[::3] = True  # 40 unscored, many of them among the lowest raw values
    scores[unscored] = float("inf")
    finite_order = [i for i in torch.argsort(scores).tolist() if not unscored[i]]
    for p, q in [("0.2", "0.5"), ("0.5", "0.5"), ("0.3", "1.0"), ("0.9", "0.2")]:
        m = min(80, _spec_candidates(n, p, q))  # only the 80 scored samples can be candidates
        n_drop = min(int(Fraction(p) * n), 80)
        for epoch in range(20):
            sel = random_drop_selection(scores, float(p), float(q), epoch_generator(1, epoch))
            _check_well_formed(sel, n)
            dropped = _dropped(sel)
            assert not any(unscored[i] for i in dropped)
            assert dropped <= set(finite_order[:m])
            assert len(dropped) == n_drop
            kept_unscored = [w for i, w in zip(sel.indices.tolist(), sel.weights.tolist(), strict=True) if unscored[i]]
            assert kept_unscored == [1.0] * 40


def test_all_unscored_keeps_everything():
    sel = random_drop_selection(torch.full((10,), float("inf")), 0.5, 0.5, epoch_generator(0, 0))
    assert sorted(sel.indices.tolist()) == list(range(10))
    assert torch.equal(sel.weights, torch.ones(10))


# ------------------------------------------------------------------------------- (c) unbiasedness
def _estimates(g: torch.Tensor, scores: torch.Tensor, p: float, q: float, runs: int, weighted: bool = True):
    out = torch.empty(runs, g.shape[1], dtype=torch.float64)
    for seed in range(runs):
        sel = random_drop_selection(scores, p, q, epoch_generator(seed, 7))
        w = sel.weights.double() if weighted else torch.ones(len(sel), dtype=torch.float64)
        out[seed] = (w[:, None] * g[sel.indices]).sum(0)
    return out


@pytest.mark.parametrize("p, q", [(0.3, 0.5), (0.7, 0.5), (0.2, 0.1)])
def test_weighted_kept_sum_is_unbiased(p, q):
    n, d, runs = 200, 5, 2000
    gen = torch.Generator().manual_seed(42)
    g = torch.randn(n, d, generator=gen, dtype=torch.float64) + 1.0  # "per-sample gradients", mean 1
    scores = torch.rand(n, generator=gen)
    full = g.sum(0)

    est = _estimates(g, scores, p, q, runs)
    mean, stderr = est.mean(0), est.std(0) / math.sqrt(runs)
    assert (stderr > 1e-3).all(), "the selection is random, so the estimate must vary"
    # unbiased: within 4 standard errors on every coordinate
    assert ((mean - full).abs() <= 4 * stderr).all(), ((mean - full) / stderr).tolist()

    # the same test detects bias: unweighted kept sums and hard pruning are far off
    plain = _estimates(g, scores, p, q, 300, weighted=False)
    assert ((plain.mean(0) - full).abs() > 20 * stderr).all()
    hard = _estimates(g, scores, p, 1.0, 1)[0]
    assert ((hard - full).abs() > 20 * stderr).all()


# ------------------------------------------------------------------------------- (d) seeding
def test_same_seed_and_epoch_give_the_same_selection():
    scores = torch.rand(500, generator=torch.Generator().manual_seed(0))
    a = random_drop_selection(scores, 0.4, 0.5, epoch_generator(7, 3))
    b = random_drop_selection(scores, 0.4, 0.5, epoch_generator(7, 3))
    assert torch.equal(a.indices, b.indices)
    assert a.num_unit_weight == b.num_unit_weight and a.weight == b.weight

    other_epoch = random_drop_selection(scores, 0.4, 0.5, epoch_generator(7, 4))
    other_seed = random_drop_selection(scores, 0.4, 0.5, epoch_generator(8, 3))
    other_stream = random_drop_selection(scores, 0.4, 0.5, epoch_generator(7, 3, stream=1))
    for c in (other_epoch, other_seed, other_stream):
        assert len(c) == len(a)
        assert set(c.indices.tolist()) != set(a.indices.tolist())


def test_epoch_generators_are_distinct_over_many_epochs_and_seeds():
    firsts = {
        tuple(torch.randint(0, 2**31 - 1, (2,), generator=epoch_generator(seed, epoch)).tolist())
        for seed in range(5)
        for epoch in range(200)
    }
    assert len(firsts) == 1000


# ------------------------------------------------------------------------------- (e) lowest_k_mask
def _reference_lowest(scores: list[float], k: int) -> set[int]:
    return set(sorted(range(len(scores)), key=lambda i: (scores[i], i))[: max(k, 0)])


def test_lowest_k_mask_ties_by_index():
    scores = torch.tensor([3.0, 1.0, 2.0, 1.0, 2.0, 5.0, 1.0])
    expected = {
        0: set(),
        1: {1},
        2: {1, 3},
        3: {1, 3, 6},
        4: {1, 2, 3, 6},
        5: {1, 2, 3, 4, 6},
        6: {0, 1, 2, 3, 4, 6},
        7: set(range(7)),
        10: set(range(7)),
        -2: set(),
    }
    for k, want in expected.items():
        mask = lowest_k_mask(scores, k)
        assert mask.dtype == torch.bool and mask.shape == (7,)
        assert set(torch.nonzero(mask).squeeze(1).tolist()) == want, k


@pytest.mark.parametrize("n", [1, 5, 64, 333])
def test_lowest_k_mask_matches_stable_sort(n):
    gen = torch.Generator().manual_seed(n)
    scores = torch.randint(0, 6, (n,), generator=gen).float()  # heavy ties
    scores[torch.rand(n, generator=gen) < 0.1] = float("inf")
    values = scores.tolist()
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n, n + 3}):
        mask = lowest_k_mask(scores, k)
        assert int(mask.sum()) == min(max(k, 0), n)
        assert set(torch.nonzero(mask).squeeze(1).tolist()) == _reference_lowest(values, k), k


@pytest.mark.parametrize("levels", [3, 1000, None])
def test_lowest_k_mask_on_the_bracketed_path_matches_stable_sort(levels):
    """Inputs above the exact-kthvalue size go through the sampled bracket; ties still break by index."""
    n = (1 << 22) + 12345
    gen = torch.Generator().manual_seed(7)
    scores = torch.rand(n, generator=gen) if levels is None else torch.randint(0, levels, (n,), generator=gen).float()
    order = torch.sort(scores, stable=True).indices
    for k in (1, n // 3, n // 2 + 1, n - 2):
        want = torch.zeros(n, dtype=torch.bool)
        want[order[:k]] = True
        assert torch.equal(lowest_k_mask(scores, k), want), (levels, k)
        assert kth_smallest(scores, k).item() == scores[order[k - 1]].item()


# ----------------------------------------------------------------------------- staleness (TED max_staleness)
def _simulate(method, ratios, n=4000, seed=0):
    """Epochs of select -> train the kept -> score them with FIXED scores (the adversarial case for lock-out).

    Returns the longest run between two trainings of any sample, the kept counts and the dropped-set
    overlaps between consecutive pruned epochs.
    """
    from lightning_ted.core.state import ScoreState

    state = ScoreState(n)
    fixed = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    last = torch.full((n,), -1)
    longest, kept_counts, overlaps, prev = 0, [], [], None
    for epoch, ratio in enumerate(ratios):
        kept = torch.arange(n) if epoch == 0 else method.select(state, ratio, epoch_generator(seed, epoch)).indices
        kept_counts.append(kept.numel())
        dropped = torch.ones(n, dtype=torch.bool)
        dropped[kept] = False
        if prev is not None and dropped.any():
            overlaps.append(float((dropped & prev).sum()) / float(dropped.sum()))
        prev = dropped
        longest = max(longest, int((epoch - last[kept]).max()))
        last[kept] = epoch
        state.apply(kept, fixed[kept], method.alpha, epoch)
    return max(longest, int((len(ratios) - last).max())), kept_counts, overlaps


@pytest.mark.parametrize("q", [0.5, 1.0])
@pytest.mark.parametrize("k", [3, 4])
def test_stale_samples_are_trained_at_least_every_k_epochs(q, k):
    """With max_staleness=K no sample goes more than K epochs between trainings, and counts stay exact."""
    ratios = [0.0] + [0.5] * 15
    longest, kept, _ = _simulate(TED(q=q, max_staleness=k), ratios)
    assert longest <= k
    assert kept[1:] == [2000] * 15
    unprotected, _, _ = _simulate(TED(q=q, max_staleness=None), ratios)
    assert unprotected > k  # without the rule some samples are left out longer


@pytest.mark.parametrize(("ratio", "bound"), [(0.3, 4), (0.5, 4), (0.65, 4), (0.7, 5), (0.8, 6), (0.9, 11)])
def test_under_the_default_every_sample_is_trained_at_least_every_k_epochs(ratio, bound):
    """TED() keeps K = 4: on fixed scores (the lock-out case) the longest gap between two trainings is
    ``max(4, ceil(1 / (1 - p)) + 1)``: 4 up to p = 0.65; above, a full rotation of the kept share takes
    ``1 / (1 - p)`` epochs and the first stale wave one more."""
    assert TED().max_staleness == 4
    assert bound == max(4, math.ceil(1 / (1 - Fraction(str(ratio)))) + 1)  # exact: 1 / 0.2 is 5, not 5.000001
    ratios = [0.0] + [ratio] * 15
    for seed in (0, 1):
        longest, kept, _ = _simulate(TED(), ratios, seed=seed)
        assert longest == bound
        assert kept[1:] == [round((1 - ratio) * 4000)] * 15


def test_hard_pruning_no_longer_locks_the_same_samples_out():
    """q=1 on fixed scores drops the same set every epoch (overlap 1); the staleness rule rotates it."""
    ratios = [0.0] + [0.7] * 12
    _, _, locked = _simulate(TED(q=1.0, max_staleness=None), ratios)
    assert min(locked[1:]) == 1.0  # from the second pruned epoch on (the first compares with epoch 0)
    _, kept, rotating = _simulate(TED(q=1.0, max_staleness=4), ratios)
    assert max(rotating[-6:]) < 1.0 and sum(rotating[-6:]) / 6 < 0.8  # after the first stale wave
    assert kept[1:] == [1200] * 12  # the schedule's count even when the stale samples do not all fit


def test_when_stale_samples_do_not_fit_the_stalest_are_kept():
    """More stale samples than kept slots: the count follows the schedule and the oldest are trained."""
    from lightning_ted.core.selection import stale_protected_selection

    scores = torch.arange(10, dtype=torch.float32)
    age = torch.tensor([9, 8, 7, 6, 5, 4, 1, 1, 1, 1])  # six stale (age >= 4), four fresh
    sel = stale_protected_selection(scores, age, 4, 0.7, 0.5, epoch_generator(0, 1))
    assert sorted(sel.indices.tolist()) == [0, 1, 2]  # 3 kept: the three stalest
    # a rotation like RS2's: the kept weigh N / kept, so the epoch's total weight stays N
    assert torch.allclose(sel.weights, torch.full((3,), 10 / 3))
    assert float(sel.weights.sum()) == pytest.approx(10.0)


def test_kept_stale_samples_share_the_candidate_pool_weight():
    """Stale samples kept by the rule weigh like the kept candidates, plain high scores weigh 1, sum is N."""
    from lightning_ted.core.selection import stale_protected_selection

    scores = torch.arange(10, dtype=torch.float32)
    age = torch.tensor([5, 4, 1, 1, 1, 1, 1, 1, 1, 1])  # samples 0 and 1 are stale
    sel = stale_protected_selection(scores, age, 4, 0.3, 0.5, epoch_generator(0, 1))
    weight = dict(zip(sel.indices.tolist(), sel.weights.tolist(), strict=True))
    assert len(sel) == 7 and {0, 1, 8, 9} <= set(weight)  # 3 of the candidates 2..7 dropped
    assert weight[8] == weight[9] == 1.0  # above the candidates: plain keeps
    pool_weight = 8 / 5  # pool: the 6 candidates and 2 stale; kept members: 3 candidates and 2 stale
    assert all(w == pytest.approx(pool_weight) for i, w in weight.items() if i not in (8, 9))
    assert float(sel.weights.sum()) == pytest.approx(10.0)


def test_a_stale_wave_does_not_concentrate_the_weight_on_a_few_candidates():
    """s = 0.7 with every sample a candidate: the kept set weighs N / kept uniformly, as in RS2."""
    ratios = [0.0] + [0.7] * 8
    from lightning_ted.core.state import ScoreState

    n, method = 3000, TED(max_staleness=4, normalize=False)
    state = ScoreState(n)
    for epoch, ratio in enumerate(ratios):
        if ratio == 0.0:
            kept, weights = torch.arange(n), torch.ones(n)
        else:
            sel = method.select(state, ratio, epoch_generator(0, epoch))
            kept, weights = sel.indices, sel.weights
            assert float(weights.max()) == pytest.approx(n / len(sel))  # no sample carries more
            assert float(weights.sum()) == pytest.approx(n)
        state.apply(kept, torch.rand(len(kept)), method.alpha, epoch)


def test_max_staleness_below_two_is_rejected():
    with pytest.raises(ValueError, match="max_staleness"):
        TED(max_staleness=1)


# ------------------------------------------------------------------------------- max_weight bound
def test_min_pool_is_the_smallest_pool_within_the_bound():
    """min_pool(d, M) is the smallest P with P / (P - d) <= M, by exhaustive search in exact fractions."""
    from lightning_ted.core.selection import min_pool

    for m in (1.5, 2.0, 3.0, 4.0, 10.0, 7.3):
        for d in range(0, 60):
            brute = next(p for p in range(d, 100 * d + 2) if p == d == 0 or (p > d and Fraction(p, p - d) <= m))
            assert min_pool(d, m) == brute, (d, m)


@pytest.mark.parametrize("n", [10, 97, 1000])
@pytest.mark.parametrize("p", [0.3, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("q", [0.5, 0.95, 1.0])
@pytest.mark.parametrize("m", [2.0, 10.0])
def test_random_drop_with_max_weight_bounds_weights_and_keeps_the_capped_count(n, p, q, m):
    """Weights <= M; kept = N - min(round(pN), N - ceil(N / M)); the candidates widen, never the kept set,
    when q alone would weigh more than M."""
    from lightning_ted.core.selection import bounded_drop

    sel = random_drop_selection(_distinct_scores(n, 2), p, q, epoch_generator(0, 1), max_weight=m)
    _check_well_formed(sel, n)
    assert float(sel.weights.max()) <= m
    n_drop = min(round(p * n), n - math.ceil(Fraction(n) / Fraction(m)))
    assert bounded_drop(n, p, m) == n_drop and len(sel) == n - n_drop
