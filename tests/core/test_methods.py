"""Selection and update rules of every pruning method, checked on hand-made scores against brute force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_ted import distillation_loss
from lightning_ted.core.selection import Selection
from lightning_ted.core.state import Observations, ScoreState
from lightning_ted.methods import (
    CAT,
    CCS,
    DEFAULT_MAX_WEIGHT,
    EL2N,
    METHODS,
    TED,
    UCB,
    EpsilonGreedy,
    Forgetting,
    FullData,
    GraNd,
    InfoBatch,
    PruningMethod,
    RandomSubset,
    WeightBoundWarning,
)
from lightning_ted.research import TEDVariant


# ------------------------------------------------------------------------------- helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _obs(indices, loss=None, term=None) -> Observations:
    """Observations of ``indices`` with the given loss and term columns (zeros where omitted)."""
    index = torch.as_tensor(indices, dtype=torch.int64)
    zeros = torch.zeros(index.numel(), dtype=torch.float32)
    loss = zeros if loss is None else torch.as_tensor(loss, dtype=torch.float32)
    term = zeros if term is None else torch.as_tensor(term, dtype=torch.float32)
    return Observations(index, torch.stack([loss, term], dim=1))


def _state(method: PruningMethod, n: int) -> ScoreState:
    return ScoreState(n, columns=method.columns)


def _kept(sel: Selection) -> set[int]:
    return set(sel.indices.tolist())


def _dropped(sel: Selection) -> set[int]:
    return set(range(sel.num_samples)) - _kept(sel)


def _weight_of(sel: Selection) -> dict[int, float]:
    return dict(zip(sel.indices.tolist(), sel.weights.tolist(), strict=True))


def _top(values, k: int) -> set[int]:
    """Indices of the ``k`` largest of distinct ``values`` by plain Python sorting."""
    values = [float(v) for v in values]
    assert len(set(values)) == len(values), "brute force needs distinct values"
    return set(sorted(range(len(values)), key=lambda i: -values[i])[:k])


def _check_well_formed(sel: Selection, n: int) -> None:
    idx = sel.indices.tolist()
    assert len(set(idx)) == len(idx), "kept indices repeat"
    assert all(0 <= i < n for i in idx) and sel.num_samples == n


def _n_keep(n: int, p: float) -> int:
    return n - int(round(p * n))


# ------------------------------------------------------------------------------- registry and interface
@pytest.mark.parametrize(
    "name, cls, statistic, value_column, columns",
    [
        ("full", FullData, None, "loss", ()),
        ("random", RandomSubset, None, "loss", ()),
        ("infobatch", InfoBatch, None, "loss", ()),
        ("ucb", UCB, None, "loss", ("loss_variance",)),
        ("epsilon_greedy", EpsilonGreedy, None, "loss", ("loss_variance",)),
        ("el2n", EL2N, "el2n", "term", ()),
        ("grand", GraNd, "grand", "term", ()),
        ("forgetting", Forgetting, "correct", None, ("correctness",)),  # its update reads obs.term directly
        ("ccs", CCS, "el2n", "term", ()),
        ("cat", CAT, None, "loss", ("loss_mean",)),
        ("ted", TED, "taylor", "term", ()),
    ],
)
def test_registry_names_head_statistic_and_observed_column(name, cls, statistic, value_column, columns):
    """METHODS maps each name to its class, which reads the documented head statistic and observation column."""
    assert METHODS[name] is cls
    method = cls()
    assert method.head_statistic == statistic and tuple(c.name for c in method.columns) == columns
    obs = _obs([0, 1], loss=[1.5, 2.5], term=[-3.0, 4.0])
    if value_column is not None:
        assert method.observation_value(obs).tolist() == (obs.loss if value_column == "loss" else obs.term).tolist()


# ------------------------------------------------------------------------------- full
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_full_keeps_every_sample_with_unit_weight(p):
    """FullData ignores the schedule: all N samples, weight 1, expected_kept = N."""
    n = 13
    method, state = FullData(), ScoreState(n)
    method.update(state, _obs(range(n), loss=torch.arange(n).float()), 0)
    sel = method.select(state, p, _gen(0))
    assert sel.indices.tolist() == list(range(n))
    assert sel.weights.tolist() == [1.0] * n
    assert method.expected_kept(n, p, 5) == n


# ------------------------------------------------------------------------------- random (RS2)
@pytest.mark.parametrize("n", [10, 17, 20])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.7])
def test_random_kept_count_and_unit_weights(n, p):
    """RS2 keeps exactly N - round(pN) distinct samples with weight 1."""
    sel = RandomSubset().select(ScoreState(n), p, _gen(1))
    _check_well_formed(sel, n)
    assert len(sel) == _n_keep(n, p)
    assert sel.weights.tolist() == [1.0] * len(sel)


@pytest.mark.parametrize("n, p", [(20, 0.7), (20, 0.5), (17, 0.6), (12, 0.75), (19, 0.3)])
def test_random_without_replacement_across_epochs(n, p):
    """RS2 keeps the least-visited samples first: every sample once within ceil(1/(1-p)) epochs, none twice before."""
    method, state = RandomSubset(), ScoreState(n)
    k = _n_keep(n, p)
    epochs = math.ceil(1 / (1 - p))
    assert epochs == math.ceil(n / k)  # the cases are chosen so round(pN) does not change the epoch count
    seen_once: set[int] = set()
    for epoch in range(3 * epochs):
        before = state.seen.clone()
        sel = method.select(state, p, _gen(100 + epoch))
        _check_well_formed(sel, n)
        assert len(sel) == k
        kept, dropped = sorted(_kept(sel)), sorted(_dropped(sel))
        # no kept sample has been visited more often than any dropped one
        assert max(before[kept].tolist()) <= min(before[dropped].tolist()), epoch
        if seen_once & set(kept):  # a repeat only once every sample has been seen
            assert seen_once | set(kept) == set(range(n)), epoch
        seen_once |= set(kept)
        if epoch == epochs - 1:
            assert seen_once == set(range(n))
        method.update(state, _obs(kept, loss=torch.ones(k)), epoch)
        assert int(state.seen.max() - state.seen.min()) <= 1


def test_random_subset_is_uniform():
    """RS2 draws uniformly among equally-visited samples: each kept with frequency K/N within 5 standard errors."""
    n, p, trials = 20, 0.6, 2000
    method, state = RandomSubset(), ScoreState(n)
    method.update(state, _obs(range(n), loss=torch.arange(n).float()), 0)  # scores must not matter
    counts = torch.zeros(n)
    for t in range(trials):
        counts[method.select(state, p, _gen(t)).indices] += 1
    rate = _n_keep(n, p) / n
    se = math.sqrt(rate * (1 - rate) / trials)
    assert (counts / trials - rate).abs().max() < 5 * se, counts


# ------------------------------------------------------------------------------- infobatch
def test_infobatch_only_below_mean_candidates_are_dropped_and_reweighted():
    """InfoBatch drops only samples whose last loss is below the mean; kept candidates weigh 1/(1-r), others 1."""
    r = 0.5
    losses = [0.25, 3.0, 0.5, 2.0, 1.0, 4.0, 0.75, 1.25, 0.0, 2.5, 1.5, 5.0]
    n = len(losses) + 2  # two more samples are never observed
    method, state = InfoBatch(), ScoreState(n)
    method.update(state, _obs(range(n - 2), loss=[9.0] * (n - 2)), 0)
    method.update(state, _obs(range(n - 2), loss=losses), 1)  # the score is the last loss
    mean = sum(losses) / len(losses)
    candidates = {i for i, v in enumerate(losses) if v < mean}
    assert candidates == {0, 2, 4, 6, 7, 8, 10}
    ever_dropped: set[int] = set()
    for seed in range(30):
        sel = method.select(state, r, _gen(seed))
        _check_well_formed(sel, n)
        dropped = _dropped(sel)
        assert dropped <= candidates
        ever_dropped |= dropped
        for i, w in _weight_of(sel).items():
            assert w == pytest.approx(1 / (1 - r) if i in candidates else 1.0), (i, w)
    assert ever_dropped == candidates


def test_infobatch_drop_share_and_unbiased_weighted_sum():
    """Over large N the dropped share of candidates is r within 4 SE and sum(w * loss) is unbiased for sum(loss)."""
    n, r, seeds = 20_000, 0.4, 10
    loss = torch.rand(n, generator=_gen(12345)).pow(2) * 3  # a seed no select() below reuses
    method, state = InfoBatch(), ScoreState(n)
    method.update(state, _obs(range(n), loss=loss), 0)
    cand = loss.double() < loss.double().mean()
    n_cand, total = int(cand.sum()), float(loss.double().sum())
    # per draw: dropped share ~ Binomial(n_cand, r) / n_cand; weighted sum has variance r/(1-r) sum_cand loss^2
    share_se = math.sqrt(r * (1 - r) / n_cand / seeds)
    sum_se = math.sqrt(r / (1 - r) * float(loss[cand].double().pow(2).sum()) / seeds)
    shares, sums = [], []
    for seed in range(seeds):
        sel = method.select(state, r, _gen(seed))
        dropped = torch.ones(n, dtype=torch.bool)
        dropped[sel.indices] = False
        assert not bool((dropped & ~cand).any())
        shares.append(int(dropped.sum()) / n_cand)
        sums.append(float((sel.weights.double() * loss[sel.indices].double()).sum()))
    assert abs(sum(shares) / seeds - r) < 4 * share_se, shares
    assert abs(sum(sums) / seeds - total) < 4 * sum_se, (sums, total)


def test_infobatch_keeps_everything_without_ratio_or_scores():
    """InfoBatch keeps all samples at weight 1 when r = 0 or when nothing has been scored yet."""
    n = 9
    method = InfoBatch()
    assert _kept(method.select(ScoreState(n), 0.5, _gen(0))) == set(range(n))
    state = ScoreState(n)
    method.update(state, _obs(range(n), loss=torch.arange(n).float()), 0)
    sel = method.select(state, 0.0, _gen(0))
    assert _kept(sel) == set(range(n)) and sel.weights.tolist() == [1.0] * n


# ------------------------------------------------------------------------------- ucb / epsilon-greedy
@pytest.mark.parametrize("cls", [UCB, EpsilonGreedy])
def test_bandit_ema_of_loss_and_of_its_squared_deviation(cls):
    """The bandits keep EMA(loss) in score and the EMA variance a (var + (1 - a) d^2) in loss_variance, per visit."""
    a = 0.6
    method = cls(alpha=a)
    state = _state(method, 3)
    seq = [1.0, 3.0, 2.0, 5.0, 4.5]
    for epoch, x in enumerate(seq):
        idx = [0, 2] if epoch % 2 == 0 else [0]
        method.update(state, _obs(idx, loss=[x, 7.0][: len(idx)]), epoch)
    mean, var = seq[0], 0.0  # West/Finch exponentially weighted mean and variance, by hand
    for x in seq[1:]:
        d = x - mean
        mean, var = mean + (1 - a) * d, a * (var + (1 - a) * d * d)
    assert state.score[0].item() == pytest.approx(mean, rel=1e-6)
    assert state.columns["loss_variance"][0].item() == pytest.approx(var, rel=1e-6)
    assert state.score[2].item() == pytest.approx(7.0) and state.columns["loss_variance"][2].item() == 0  # no variance
    assert math.isinf(state.score[1].item()) and state.seen[1] == 0


def _bandit_state(method, score, aux) -> ScoreState:
    state = _state(method, len(score))
    state.score.copy_(torch.tensor(score))
    state.columns["loss_variance"].copy_(torch.tensor(aux))
    state.seen.fill_(3)
    return state


UCB_SCORE = [0.5, 2.0, 1.0, 3.0, 0.1, 1.5, 2.5, 0.9, 0.3, 1.8, 2.2, 0.7]
UCB_VAR = [0.0, 0.01, 4.0, 0.0, 0.25, 0.04, 0.0, 1.0, 2.25, 0.09, 0.25, 0.0]


@pytest.mark.parametrize("c", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("p", [0.25, 0.5, 0.75])
def test_ucb_keeps_highest_upper_confidence_bound(c, p):
    """UCB keeps the N - round(pN) samples with the highest EMA(loss) + c sqrt(EMA variance), weight 1."""
    method = UCB(c=c)
    state = _bandit_state(method, UCB_SCORE, UCB_VAR)
    n = len(UCB_SCORE)
    bound = [s + c * math.sqrt(v) for s, v in zip(UCB_SCORE, UCB_VAR, strict=True)]
    sel = method.select(state, p, _gen(0))
    assert _kept(sel) == _top(bound, _n_keep(n, p))
    assert sel.weights.tolist() == [1.0] * len(sel)


def test_ucb_uncertainty_bonus_and_unseen_samples():
    """A low-mean, high-variance sample beats a higher-mean certain one once c > 0; unseen samples are always kept."""
    n, p = len(UCB_SCORE), 0.5
    greedy = _kept(UCB(c=0.0).select(_bandit_state(UCB(), UCB_SCORE, UCB_VAR), p, _gen(0)))
    bonus = _kept(UCB(c=2.0).select(_bandit_state(UCB(), UCB_SCORE, UCB_VAR), p, _gen(0)))
    assert 8 not in greedy and 8 in bonus  # score 0.3, std 1.5: only the bonus keeps it
    assert 3 in greedy and 3 in bonus  # the highest mean stays
    method = UCB(c=1.0)
    state = _state(method, n)
    method.update(state, _obs(range(3, n), loss=[10.0 + i for i in range(3, n)]), 0)  # 0, 1, 2 never seen
    for p in (0.25, 0.5, 0.75):
        assert {0, 1, 2} <= _kept(method.select(state, p, _gen(0)))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_epsilon_zero_keeps_exactly_the_top_ema_losses(p):
    """Epsilon-greedy with epsilon = 0 keeps the N - round(pN) highest EMA losses, whatever the generator."""
    method = EpsilonGreedy(epsilon=0.0)
    state = _bandit_state(method, UCB_SCORE, UCB_VAR)
    want = _top(UCB_SCORE, _n_keep(len(UCB_SCORE), p))
    for seed in range(5):
        assert _kept(method.select(state, p, _gen(seed))) == want


def _inclusion_rates(method, state, p, trials) -> torch.Tensor:
    counts = torch.zeros(state.num_samples)
    for t in range(trials):
        sel = method.select(state, p, _gen(t))
        assert len(sel) == _n_keep(state.num_samples, p)
        counts[sel.indices] += 1
    return counts / trials


def test_epsilon_one_is_uniformly_random():
    """Epsilon-greedy with epsilon = 1 keeps each sample with frequency K/N within 5 SE, ignoring the scores."""
    n, p, trials = len(UCB_SCORE), 0.5, 2000
    method = EpsilonGreedy(epsilon=1.0)
    rates = _inclusion_rates(method, _bandit_state(method, UCB_SCORE, UCB_VAR), p, trials)
    rate = _n_keep(n, p) / n
    assert (rates - rate).abs().max() < 5 * math.sqrt(rate * (1 - rate) / trials), rates


def test_epsilon_mixes_greedy_top_and_uniform_rest():
    """With epsilon = 0.5 the top round(K/2) are always kept and the other slots are uniform over the rest."""
    n, p, trials = len(UCB_SCORE), 0.25, 2000
    method = EpsilonGreedy(epsilon=0.5)
    rates = _inclusion_rates(method, _bandit_state(method, UCB_SCORE, UCB_VAR), p, trials)
    k = _n_keep(n, p)
    g = int(round(0.5 * k))
    top = sorted(_top(UCB_SCORE, g))
    rest = sorted(set(range(n)) - set(top))
    assert rates[top].tolist() == [1.0] * g
    rate = (k - g) / (n - g)
    assert (rates[rest] - rate).abs().max() < 5 * math.sqrt(rate * (1 - rate) / trials), rates


# ------------------------------------------------------------------------------- static scores
def _run_static(method, values, column: str, extra_epochs: int = 3):
    """Feed ``values[e]`` (one row per scoring epoch) as observations, selecting before each epoch as the
    datamodule does; return the state and the selections of the scoring and of ``extra_epochs`` later epochs."""
    n = values.shape[1]
    state = _state(method, n)
    scoring, later = [], []
    for epoch in range(values.shape[0] + extra_epochs):
        sel = method.select(state, 0.5, _gen(epoch))
        (scoring if epoch < method.score_epochs else later).append(sel)
        row = values[epoch] if epoch < values.shape[0] else torch.rand(n, generator=_gen(epoch)) * 100
        method.update(state, _obs(range(n), **{column: row}), epoch)
    return state, scoring, later


@pytest.mark.parametrize("cls", [EL2N, GraNd])
def test_el2n_grand_mean_score_then_fixed_hardest_subset(cls):
    """EL2N/GraNd: full data while scoring, then every epoch the same N - round(pN) highest mean terms."""
    n, epochs = 15, 3
    method = cls(score_epochs=epochs)
    terms = torch.rand(epochs, n, generator=_gen(11)) * 2
    state, scoring, later = _run_static(method, terms, "term")
    assert len(scoring) == epochs and all(_kept(s) == set(range(n)) for s in scoring)
    assert [method.expected_kept(n, 0.5, e) for e in range(epochs + 1)] == [n] * epochs + [_n_keep(n, 0.5)]
    mean = terms.double().mean(0)
    torch.testing.assert_close(state.score.double(), mean, rtol=1e-6, atol=1e-6)  # later epochs left it alone
    want = _top(mean.tolist(), _n_keep(n, 0.5))
    assert all(_kept(s) == want for s in later)
    assert all(s.weights.tolist() == [1.0] * len(s) for s in later)


def test_forgetting_counts_correct_to_wrong_flips_and_keeps_most_forgotten():
    """Forgetting counts 1 -> 0 transitions, ranks never-learned first, then keeps the most-forgotten (fixed)."""
    correct = torch.tensor(
        [  # rows: samples, columns: scoring epochs (1 = classified correctly at that visit)
            [1, 1, 1, 1, 1],  # 0 forgotten 0
            [1, 0, 1, 0, 1],  # 2
            [0, 0, 0, 0, 0],  # never learned
            [0, 1, 0, 1, 0],  # 2
            [1, 0, 0, 0, 0],  # 1
            [0, 0, 1, 1, 1],  # 0
            [1, 1, 0, 1, 1],  # 1
            [0, 1, 1, 0, 0],  # 1
            [1, 0, 1, 1, 0],  # 2
            [0, 0, 0, 0, 1],  # 0
            [0, 0, 0, 0, 0],  # never learned
            [1, 1, 1, 1, 0],  # 1
        ],
        dtype=torch.float32,
    )
    n, epochs = correct.shape
    forgets = [sum(1 for a, b in zip(row, row[1:], strict=False) if a == 1 and b == 0) for row in correct.tolist()]
    never = [max(row) == 0 for row in correct.tolist()]
    assert forgets == [0, 2, 0, 2, 1, 0, 1, 1, 2, 0, 0, 1]
    method = Forgetting(score_epochs=epochs)
    state, scoring, later = _run_static(method, correct.T.contiguous(), "term")
    assert state.score.tolist() == [float(f) for f in forgets]
    assert all(_kept(s) == set(range(n)) for s in scoring)
    rank = [math.inf if nv else f for f, nv in zip(forgets, never, strict=True)]
    # p = 0.5 keeps 6: both never-learned, the three with 2 events, and one of the four with 1 event
    kept = _kept(later[0])
    assert len(kept) == 6 and {2, 10, 1, 3, 8} <= kept and len(kept & {4, 6, 7, 11}) == 1
    assert min(rank[i] for i in kept) >= max(rank[i] for i in set(range(n)) - kept)
    assert all(_kept(s) == kept for s in later)  # the tie at one event is broken the same way every epoch


def test_cat_keeps_most_variable_loss_across_scoring_epochs():
    """CAT scores the population std of each sample's per-epoch losses and then keeps the most variable (fixed)."""
    n, epochs = 14, 3
    losses = torch.rand(epochs, n, generator=_gen(21)) * 3
    losses[:, 0] = 2.0  # flat and high: pruned even though its loss is large
    losses[:, 1] = torch.tensor([0.010, 0.011, 0.012])  # nearly flat and learned
    method = CAT(score_epochs=epochs)
    state, scoring, later = _run_static(method, losses, "loss")
    assert all(_kept(s) == set(range(n)) for s in scoring)
    std = [math.sqrt(sum((x - sum(col) / epochs) ** 2 for x in col) / epochs) for col in losses.double().T.tolist()]
    torch.testing.assert_close(
        method.importance(state).double(), torch.tensor(std, dtype=torch.float64), atol=1e-5, rtol=1e-5
    )
    for p in (0.3, 0.5, 0.8):
        sel = method.select(state, p, _gen(99))
        assert _kept(sel) == _top(std, _n_keep(n, p))
        assert 0 not in _kept(sel) and 1 not in _kept(sel)
    assert all(_kept(s) == _top(std, _n_keep(n, 0.5)) for s in later)
    with pytest.raises(ValueError):
        CAT(score_epochs=1)


def test_static_keeps_highest_even_for_tiny_distinct_scores():
    """EL2N keeps the highest-scoring samples even when the distinct scores are below 1e-9."""
    n = 20
    tiny = torch.arange(1, n + 1, dtype=torch.float32) * 1e-11  # distinct in float32
    method = EL2N(score_epochs=1)
    state, _, later = _run_static(method, tiny.unsqueeze(0), "term", extra_epochs=1)
    assert _kept(later[0]) == _top(tiny.tolist(), _n_keep(n, 0.5))


# ------------------------------------------------------------------------------- ccs
def _bins(values: list[float], strata: int) -> list[int]:
    lo, hi = min(values), max(values)
    width = (hi - lo) / strata
    return [min(int((v - lo) / width), strata - 1) for v in values]


def _paper_quota(sizes: list[int], budget: int) -> list[int]:
    """CCS Algorithm 1: visit strata from the smallest, each taking min(size, remaining budget / strata left)."""
    quota, left = [0] * len(sizes), budget
    order = sorted(range(len(sizes)), key=lambda s: sizes[s])
    for i, s in enumerate(order):
        quota[s] = min(sizes[s], left // (len(order) - i))
        left -= quota[s]
    return quota


def _ccs_scores() -> list[float]:
    """40 shuffled scores: four width-4 bins over [0, 16] holding 16, 12, 6, 2 samples, plus 4 hard outliers."""
    g = _gen(31)
    sizes = [16, 12, 6, 2]  # easy bins are the largest
    values = []
    for b, size in enumerate(sizes):
        inner = (torch.rand(size, generator=g) * 3.0 + 0.5 + 4 * b).tolist()  # away from the bin edges
        values += inner
    values[0], values[-1] = 0.0, 16.0  # pin the pool's range to [0, 16]
    values += [30.0, 40.0, 50.0, 60.0]  # the hardest 10 %: removed first
    perm = torch.randperm(len(values), generator=g).tolist()
    return [values[i] for i in perm]


def test_ccs_drops_hardest_cutoff_and_fills_strata_evenly_smallest_first():
    """CCS removes the hardest 10 %, then keeps per equal-width stratum the even quota of Algorithm 1."""
    scores = _ccs_scores()
    n = len(scores)
    method = CCS(score_epochs=1, hard_cutoff=0.1, strata=4)
    state, scoring, later = _run_static(method, torch.tensor([scores]), "term")
    assert _kept(scoring[0]) == set(range(n))
    hardest = set(sorted(range(n), key=lambda i: -scores[i])[:4])
    pool = [i for i in range(n) if i not in hardest]
    bins = dict(zip(pool, _bins([scores[i] for i in pool], 4), strict=True))
    sizes = [sum(1 for b in bins.values() if b == s) for s in range(4)]
    assert sizes == [16, 12, 6, 2]
    for p, want in [(0.5, [6, 6, 6, 2]), (0.75, [3, 3, 2, 2]), (0.2, [12, 12, 6, 2])]:
        sel = method.select(state, p, _gen(5))
        kept = _kept(sel)
        assert len(kept) == _n_keep(n, p) and not kept & hardest
        assert _paper_quota(sizes, len(kept)) == want
        assert [sum(1 for i in kept if bins[i] == s) for s in range(4)] == want, p
        assert sel.weights.tolist() == [1.0] * len(sel)
    assert all(_kept(s) == _kept(later[0]) for s in later)  # static: the same subset every epoch


def test_ccs_hard_cutoff_never_exceeds_the_pruning_budget():
    """CCS at a small ratio drops only the hardest N - budget samples instead of the full hard cutoff."""
    scores = _ccs_scores()
    n = len(scores)
    method = CCS(score_epochs=1, hard_cutoff=0.2, strata=4)
    state, _, _ = _run_static(method, torch.tensor([scores]), "term", extra_epochs=1)
    sel = method.select(state, 0.1, _gen(0))  # budget 36 > N - floor(0.2 N) = 32: the full cutoff is infeasible
    assert _dropped(sel) == set(sorted(range(n), key=lambda i: -scores[i])[:4])


def test_ccs_samples_uniformly_inside_a_stratum():
    """With one stratum and no cutoff, CCS's kept scores are a uniform draw: mean within 4 SE, not the top-K."""
    n, p = 2000, 0.75
    scores = torch.rand(n, generator=_gen(41))
    method = CCS(score_epochs=1, hard_cutoff=0.0, strata=1)
    state, _, _ = _run_static(method, scores.unsqueeze(0), "term", extra_epochs=1)
    k = _n_keep(n, p)
    sel = method.select(state, p, _gen(0))
    kept = sel.indices
    assert kept.numel() == k
    fpc = math.sqrt((n - k) / (n - 1))  # sampling without replacement
    se = float(scores.std()) / math.sqrt(k) * fpc
    assert abs(float(scores[kept].mean()) - float(scores.mean())) < 4 * se
    assert _kept(sel) != _top(scores.tolist(), k)


# ------------------------------------------------------------------------------- ted
def test_ted_update_is_polyak_average_of_taylor_term():
    """TED scores s <- alpha s + (1 - alpha) T from the term column; the loss is ignored."""
    method = TED(alpha=0.25)
    state = _state(method, 4)
    method.update(state, _obs([0, 1, 2], loss=[5.0, 5.0, 5.0], term=[1.0, -2.0, 0.5]), 0)
    method.update(state, _obs([0, 2], loss=[0.0, 0.0], term=[3.0, -1.5]), 1)
    want = [0.25 * 1.0 + 0.75 * 3.0, -2.0, 0.25 * 0.5 + 0.75 * -1.5, math.inf]
    assert state.score.tolist() == pytest.approx(want)


@pytest.mark.parametrize("n, p", [(10, 0.3), (16, 0.5), (20, 0.25), (13, 0.6)])
def test_ted_hard_pruning_drops_exactly_the_lowest(n, p):
    """TED with q = 1 drops exactly the round(pN) lowest scores and keeps the rest at weight 1."""
    scores = torch.randperm(n, generator=_gen(n)).float() * 0.5 - 2
    method = TED(q=1.0)
    state = _state(method, n)
    method.update(state, _obs(range(n), term=scores), 0)
    for seed in range(5):
        sel = method.select(state, p, _gen(seed))
        assert _dropped(sel) == set(range(n)) - _top(scores.tolist(), _n_keep(n, p))
        assert sel.weights.tolist() == [1.0] * len(sel)


def test_ted_soft_drops_among_lowest_candidates_with_unbiased_weights():
    """TED with q = 0.5 drops round(pN) of the ceil(round(pN)/q) lowest, each with frequency q', weighting 1/(1-q')."""
    n, p, q, trials = 20, 0.3, 0.5, 1500
    scores = torch.randperm(n, generator=_gen(10_003)).float()
    method = TED(q=q, normalize=False)
    state = _state(method, n)
    method.update(state, _obs(range(n), term=scores), 0)
    n_drop = int(round(p * n))
    n_cand = math.ceil(n_drop / q)
    cand = set(range(n)) - _top(scores.tolist(), n - n_cand)
    q_eff = n_drop / n_cand
    drops = torch.zeros(n)
    values = torch.arange(1, n + 1, dtype=torch.float64)  # any per-sample quantity: its weighted sum is unbiased
    sums = []
    for t in range(trials):
        sel = method.select(state, p, _gen(t))
        dropped = _dropped(sel)
        assert len(dropped) == n_drop and dropped <= cand
        for i, w in _weight_of(sel).items():
            assert w == pytest.approx(1 / (1 - q_eff) if i in cand else 1.0)
        drops[sorted(dropped)] += 1
        sums.append(float((sel.weights.double() * values[sel.indices]).sum()))
    cand_idx = sorted(cand)
    se = math.sqrt(q_eff * (1 - q_eff) / trials)
    assert (drops[cand_idx] / trials - q_eff).abs().max() < 5 * se, drops
    mean_sum, sd = sum(sums) / trials, torch.tensor(sums).std().item()
    assert abs(mean_sum - float(values.sum())) < 4 * sd / math.sqrt(trials)


# ------------------------------------------------------------------------------- distillation
def test_distillation_loss_matches_hand_computed_ce_plus_scaled_kl():
    """distillation_loss = (1 - w) CE + w T^2 KL(teacher_T || student_T), per sample, by hand with math."""
    logits = [[2.0, -1.0, 0.5], [0.0, 0.3, -0.2]]
    teacher = [[1.0, 0.0, 3.0], [-2.0, 1.0, 0.5]]
    targets = [0, 2]
    w, t = 0.3, 2.0

    def log_softmax(row, temp):
        m = max(x / temp for x in row)
        lse = m + math.log(sum(math.exp(x / temp - m) for x in row))
        return [x / temp - lse for x in row]

    want = []
    for z, zt, y in zip(logits, teacher, targets, strict=True):
        ce = -log_softmax(z, 1.0)[y]
        ls, lt = log_softmax(z, t), log_softmax(zt, t)
        kl = sum(math.exp(b) * (b - a) for a, b in zip(ls, lt, strict=True))
        want.append((1 - w) * ce + w * t * t * kl)
    got = distillation_loss(torch.tensor(logits), torch.tensor(targets), torch.tensor(teacher), weight=w, temperature=t)
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx(want, rel=1e-5)


def test_distillation_loss_limits_and_torch_kl():
    """weight 0 is plain CE, weight 1 is T^2 F.kl_div, and an identical teacher adds no soft loss."""
    g = _gen(51)
    logits, teacher = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    targets = torch.randint(0, 5, (6,), generator=g)
    ce = F.cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(distillation_loss(logits, targets, teacher, weight=0.0), ce)
    t = 3.0
    kl = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher / t, -1), log_target=True, reduction="none")
    torch.testing.assert_close(
        distillation_loss(logits, targets, teacher, weight=1.0, temperature=t), kl.sum(-1) * t * t
    )
    same = distillation_loss(logits, targets, logits.clone(), weight=0.4, temperature=t)
    torch.testing.assert_close(same, 0.6 * ce, atol=1e-6, rtol=1e-6)


def test_static_breaks_exact_ties_at_random_but_the_same_way_every_epoch():
    """Forgetting-style integer scores: ties at the cut are split at random, identically each epoch."""
    scores = torch.tensor([0.0] * 10 + [1.0] * 20 + [2.0] * 10)  # the cut (keep 20) falls inside the 1.0 ties
    method = EL2N(score_epochs=1)
    _, _, later = _run_static(method, scores.unsqueeze(0), "term", extra_epochs=2)
    first, second = _kept(later[0]), _kept(later[1])
    assert first == second
    assert set(range(30, 40)) <= first and not first & set(range(10))
    tied_kept = sorted(first & set(range(10, 30)))
    assert len(tied_kept) == 10 and tied_kept != list(range(20, 30)) and tied_kept != list(range(10, 20))


def test_infobatch_rejects_a_ratio_of_one():
    """r = 1 would weigh kept candidates 1/0: a clear error instead of ZeroDivisionError."""
    state = ScoreState(10)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        InfoBatch().select(state, 1.0, torch.Generator().manual_seed(0))


def test_reweighted_random_weighs_kept_samples_n_over_k():
    """RandomSubset(reweight=True) keeps the RS2 set and weighs every kept sample N / K."""
    state = ScoreState(50)
    plain = RandomSubset().select(state, 0.7, torch.Generator().manual_seed(3))
    weighted = RandomSubset(reweight=True).select(state, 0.7, torch.Generator().manual_seed(3))
    assert torch.equal(plain.indices, weighted.indices) and len(weighted) == 15
    assert torch.allclose(weighted.weights, torch.full((15,), 50 / 15))
    assert float(weighted.weights.sum()) == pytest.approx(50.0)


# ------------------------------------------------------------------------------- bounded weights (max_weight)
REWEIGHTING = {
    "ted": lambda **kw: TED(**kw),
    "ted_hard_stale": lambda **kw: TED(q=1.0, **kw),
    "ted_q095": lambda **kw: TED(q=0.95, **kw),
    "ted_no_staleness": lambda **kw: TED(max_staleness=None, **kw),
    "ted_pps": lambda **kw: TEDVariant(selection="pps", **kw),
    "ted_pps_rank": lambda **kw: TEDVariant(selection="pps", pps_transform="rank", **kw),
    "random_reweight": lambda **kw: RandomSubset(reweight=True, **kw),
    "infobatch": lambda **kw: InfoBatch(**kw),
}


def _scored(method: PruningMethod, n: int, seed: int = 0) -> ScoreState:
    state = _state(method, n)
    g = _gen(seed)
    method.update(state, _obs(range(n), loss=torch.rand(n, generator=g), term=torch.randn(n, generator=g)), 0)
    return state


@pytest.mark.parametrize("name", sorted(REWEIGHTING))
@pytest.mark.parametrize("max_weight", [10.0, 4.0])
def test_ratio_0_99_never_weighs_a_sample_above_max_weight(name, max_weight):
    """At ratio 0.99 (100x weights before) every kept weight is <= max_weight, the warning fires once per
    instance, and exact-count methods keep what expected_kept (and so total_optimizer_steps) says."""
    n = 1000
    method = REWEIGHTING[name](max_weight=max_weight)
    assert method.max_weight == max_weight
    state = _scored(method, n)
    with pytest.warns(WeightBoundWarning, match="max_weight") as caught:
        sels = [method.select(state, 0.99, _gen(seed)) for seed in range(3)]
        expected = method.expected_kept(n, 0.99, 1)
    messages = [str(w.message) for w in caught if issubclass(w.category, WeightBoundWarning)]
    assert len([m for m in messages if "prune ratio 0.99" in m]) == 1  # once, though selected three times
    assert len(messages) == len(set(messages))  # TED(q=0.95) also says once that its candidates widen
    for sel in sels:
        _check_well_formed(sel, n)
        assert float(sel.weights.max()) <= max_weight
        assert float(sel.weights.min()) >= 1.0
        if method.exact_kept_count:
            assert len(sel) == expected == n - (n - math.ceil(n / max_weight))
        else:  # InfoBatch drops a share 1 - 1 / max_weight of its candidates at most
            assert len(sel) > n - 0.99 * n


@pytest.mark.parametrize("name", sorted(REWEIGHTING))
def test_bounded_weights_hold_over_epochs_with_stale_waves(name):
    """Twelve epochs at 0.95 on fixed scores (stale waves included): weights bounded, counts as expected."""
    n, method = 600, REWEIGHTING[name]()
    state = _scored(method, n)
    fixed = _obs(range(n), loss=torch.rand(n, generator=_gen(1)), term=torch.randn(n, generator=_gen(2)))
    with pytest.warns(WeightBoundWarning):
        for epoch in range(1, 13):
            sel = method.select(state, 0.95, _gen(epoch))
            assert float(sel.weights.max()) <= method.max_weight
            if method.exact_kept_count:
                assert len(sel) == method.expected_kept(n, 0.95, epoch)
            kept = sel.indices
            method.update(state, Observations(kept, fixed.values[kept]), epoch)


def test_unbounded_max_weight_restores_the_old_weights_and_bad_values_are_refused():
    state = ScoreState(100)
    heavy = RandomSubset(reweight=True, max_weight=math.inf).select(state, 0.99, _gen(0))
    assert len(heavy) == 1 and float(heavy.weights.max()) == 100.0
    with pytest.raises(ValueError, match="max_weight"):
        TED(max_weight=0.5)
    method = UCB()  # settable on every method, even one whose weights are always 1
    method.max_weight = 3
    assert method.max_weight == 3.0 and EL2N().max_weight == DEFAULT_MAX_WEIGHT == 10.0
    with pytest.raises(ValueError, match="max_weight"):
        method.max_weight = float("nan")


def test_below_the_bound_nothing_changes_and_nothing_is_warned(recwarn):
    """At ratio 0.5 the bound does not bind: the drop rule keeps N - round(pN) and no warning appears."""
    n = 200
    for name, make in REWEIGHTING.items():
        if name == "ted_q095":  # q itself exceeds the bound: warned whatever the ratio (tested above)
            continue
        method = make()
        state = _scored(method, n)
        sel = method.select(state, 0.5, _gen(0))
        if method.exact_kept_count:
            assert len(sel) == n - 100 == method.expected_kept(n, 0.5, 1)
    assert not [w for w in recwarn if issubclass(w.category, WeightBoundWarning)]


def test_unit_weight_methods_ignore_the_bound():
    """UCB keeps weight 1, so ratio 0.99 keeps 1% of the data as asked, without a warning."""
    n = 1000
    method = UCB()
    state = _scored(method, n)
    sel = method.select(state, 0.99, _gen(0))
    assert len(sel) == 10 == method.expected_kept(n, 0.99, 1) and sel.weights.tolist() == [1.0] * 10


def test_method_config_names_the_class_and_every_argument_with_defaults_filled_in():
    import doctest
    import pickle

    from lightning_ted.core import method
    from lightning_ted.methods import build_method

    assert doctest.testmod(method, verbose=False).failed == 0  # PruningMethod.config's example
    ted = build_method("ted")
    assert ted.config == {
        "class": "lightning_ted.methods.ted.TED", "score": "igd", "alpha": 0.5, "q": 0.5, "max_staleness": 4,
        "normalize": 2.0, "max_weight": 10.0,
    }  # fmt: skip
    variant = TEDVariant(score="grad_norm", ranking="random")  # the subclass records, not TED's inner call
    assert variant.config["class"].endswith("TEDVariant")
    assert (variant.config["score"], variant.config["ranking"], variant.config["q"]) == ("grad_norm", "random", 0.5)
    ted.max_weight = 4.0  # set after construction: the config says what the instance computes with now
    assert pickle.loads(pickle.dumps(ted)).config["max_weight"] == 4.0
    for name in METHODS:
        assert build_method(name).config["class"].endswith(type(build_method(name)).__qualname__)
