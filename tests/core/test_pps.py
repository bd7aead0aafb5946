"""Score-proportional unbiased selection (TED ``selection="pps"``): exact counts, unbiasedness, floor and cap,
purity, staleness, gate and cohorts, checked against brute force and over many seeds."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_ted.core.pps import (
    _order_key,
    inclusion_probabilities,
    positive_size,
    pps_selection,
    systematic_sample,
    within_cohorts,
)
from lightning_ted.core.selection import epoch_generator, random_drop_selection
from lightning_ted.core.state import Observations, ScoreState
from lightning_ted.methods import TED
from lightning_ted.research import TEDVariant
from lightning_ted.research.ted_variants import LAST_LOSS


def _scored_state(scores: torch.Tensor, epoch: int = 0, losses: torch.Tensor | None = None) -> ScoreState:
    """A state in which every sample was scored at ``epoch`` with ``scores`` (``losses``: the gate's last loss)."""
    n = scores.numel()
    state = ScoreState(n, columns=(LAST_LOSS,) if losses is not None else ())
    state.score.copy_(scores)
    state.seen.fill_(1)
    state.last_epoch.fill_(epoch)
    if losses is not None:
        state.columns["last_loss"].copy_(losses)
    return state


def _brute_pi(size: list[float], n_keep: int, pi_min: float) -> list[float]:
    """Reference: bisection on c in plain Python floats, 200 halvings."""
    lo, hi = 0.0, 1e12
    for _ in range(200):
        c = 0.5 * (lo + hi)
        if sum(min(1.0, max(pi_min, c * a)) for a in size) < n_keep:
            lo = c
        else:
            hi = c
    return [min(1.0, max(pi_min, hi * a)) for a in size]


# ------------------------------------------------------------------------------- inclusion probabilities
@pytest.mark.parametrize("n, n_keep, pi_min", [(50, 10, 0.1), (50, 30, 0.05), (200, 150, 0.2), (31, 7, 0.1)])
@pytest.mark.parametrize("dist", ["exp", "heavy", "uniform"])
def test_inclusion_probabilities_match_brute_force_and_respect_floor_and_cap(n, n_keep, pi_min, dist):
    """pi = clamp(c a, pi_min, 1) sums to n_keep exactly, equals a brute-force bisection, is monotone in a."""
    g = torch.Generator().manual_seed(n + n_keep)
    size = {
        "exp": torch.empty(n).exponential_(generator=g),
        "heavy": torch.rand(n, generator=g).pow(-2.0),  # a few huge sizes: several hit the cap
        "uniform": torch.rand(n, generator=g) + 0.5,
    }[dist].double()
    pi = inclusion_probabilities(size, n_keep, pi_min)
    assert float(pi.sum()) == pytest.approx(n_keep, abs=1e-9)
    assert float(pi.min()) >= pi_min - 1e-15 and float(pi.max()) <= 1.0
    torch.testing.assert_close(pi, torch.tensor(_brute_pi(size.tolist(), n_keep, pi_min), dtype=torch.float64))
    order = torch.argsort(size)
    assert bool((pi[order].diff() >= -1e-15).all())  # monotone in the size
    inside = (pi > pi_min + 1e-12) & (pi < 1.0 - 1e-12)
    if int(inside.sum()) > 1:  # proportional to the size between the floor and the cap
        ratio = pi[inside] / size[inside]
        assert float(ratio.max() - ratio.min()) < 1e-9 * float(ratio.max())


def test_inclusion_probabilities_edge_counts():
    size = torch.rand(20, dtype=torch.float64) + 0.1
    assert inclusion_probabilities(size, 20, 0.1).tolist() == [1.0] * 20
    assert inclusion_probabilities(size, 2, 0.1).tolist() == [0.1] * 20  # the floor alone fills n_keep
    with pytest.raises(ValueError, match="pi_min"):
        inclusion_probabilities(size, 5, 0.0)


# ------------------------------------------------------------------------------- exact size
@pytest.mark.filterwarnings("ignore::lightning_ted.methods.WeightBoundWarning")  # 0.9 and 0.99 hit the bound
@pytest.mark.parametrize("n", [1, 2, 9, 100, 1001])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("transform", ["value", "rank"])
def test_ted_pps_keeps_exactly_the_schedule_count_and_bounds_weights(n, ratio, transform):
    """Kept count = N - drop_count (= expected_kept) for every seed; weights in [1, max_weight] are 1/pi."""
    method = TEDVariant(normalize=False, selection="pps", pps_transform=transform, max_staleness=None)
    state = _scored_state(torch.randn(n, generator=torch.Generator().manual_seed(n)))
    expected = method.expected_kept(n, ratio, epoch=1)
    assert expected >= math.ceil(n / method.max_weight)
    for seed in range(5):
        sel = method.select(state, ratio, epoch_generator(seed, 1))
        idx = sel.indices.tolist()
        assert len(idx) == expected == len(set(idx)) and all(0 <= i < n for i in idx)
        w = sel.weights
        assert float(w.min()) >= 1.0 and float(w.max()) <= method.max_weight
        torch.testing.assert_close(sel.weight_at(torch.arange(len(sel)).flip(0)), w.flip(0))
        assert math.isnan(sel.weight)  # the shared weight cannot be used by mistake


def test_systematic_sample_is_exact_and_hits_each_unit_with_its_probability():
    """Exactly n_keep units every draw; over 4000 draws each unit's frequency is pi_k within 5 SE."""
    n, n_keep, draws = 40, 13, 4000
    pi = inclusion_probabilities(torch.linspace(0.1, 3.0, n, dtype=torch.float64), n_keep, 0.1)
    counts = torch.zeros(n, dtype=torch.float64)
    for seed in range(draws):
        chosen = systematic_sample(pi, n_keep, epoch_generator(seed, 2))
        assert chosen.numel() == n_keep == chosen.unique().numel()
        counts[chosen] += 1
    se = (pi * (1 - pi) / draws).sqrt().clamp_min(1e-12)
    assert float(((counts / draws - pi).abs() / se).max()) < 5.0


# ------------------------------------------------------------------------------- unbiasedness
def test_pps_weighted_sum_is_unbiased_and_the_old_rules_are_not():
    """E[sum_kept w_k g_k] = sum_k g_k over 3000 seeds, within 4 standard errors of the mean (SE from the
    draws). Controls that fail the same test: the drop rule's kept set UNWEIGHTED, and hard pruning of the
    lowest scores rescaled by N / kept, since g is correlated with the score."""
    n, ratio, seeds = 300, 0.6, 3000
    gen = torch.Generator().manual_seed(7)
    scores = torch.randn(n, generator=gen)
    g = (scores + 0.5 * torch.randn(n, generator=gen)).double()  # per-sample values tied to the scores
    full = float(g.sum())
    state = _scored_state(scores)
    method = TEDVariant(normalize=False, selection="pps", max_staleness=None)

    def estimates(select) -> torch.Tensor:
        out = []
        for seed in range(seeds):
            sel = select(epoch_generator(seed, 1))
            out.append(float((sel.weights.double() * g[sel.indices]).sum()))
        return torch.tensor(out, dtype=torch.float64)

    def z(est: torch.Tensor) -> float:
        se = float(est.std()) / math.sqrt(seeds)
        return abs(float(est.mean()) - full) / max(se, 1e-12)

    pps = estimates(lambda gen_: method.select(state, ratio, gen_))
    assert z(pps) < 4.0, (float(pps.mean()), full)

    drop = estimates(lambda gen_: random_drop_selection(scores, ratio, 0.5, gen_))
    assert z(drop) < 4.0  # the drop rule's weights are unbiased too ...
    unweighted = []
    for seed in range(seeds):
        sel = random_drop_selection(scores, ratio, 0.5, epoch_generator(seed, 1))
        unweighted.append(float(g[sel.indices].sum()))
    assert z(torch.tensor(unweighted, dtype=torch.float64)) > 20.0  # ... its kept set without them is not
    hard = random_drop_selection(scores, ratio, 1.0, epoch_generator(0, 1))
    rescaled = float(g[hard.indices].sum()) * n / len(hard)  # deterministic: no seed changes it
    assert abs(rescaled - full) > 8 * float(pps.std()) / math.sqrt(seeds)


def test_stale_and_gated_samples_keep_the_estimate_unbiased():
    """Forced samples (stale, above-mean loss) are kept at pi = 1 with weight 1: still unbiased."""
    n, seeds = 200, 2000
    gen = torch.Generator().manual_seed(3)
    scores, losses = torch.randn(n, generator=gen), torch.rand(n, generator=gen)
    g = torch.randn(n, generator=gen).double() + 1.0
    state = _scored_state(scores, epoch=5, losses=losses)
    state.last_epoch[:30] = 1  # 30 stale samples (age 5 >= 4)
    method = TEDVariant(normalize=False, selection="pps", gate="mean_loss", max_staleness=4)
    est = []
    for seed in range(seeds):
        sel = method.select(state, 0.3, epoch_generator(seed, 6))
        assert set(range(30)) <= set(sel.indices.tolist())
        assert set(torch.nonzero(losses.double() >= losses.double().mean()).squeeze(1).tolist()) <= set(
            sel.indices.tolist()
        )
        est.append(float((sel.weights.double() * g[sel.indices]).sum()))
    est_t = torch.tensor(est, dtype=torch.float64)
    assert abs(float(est_t.mean()) - float(g.sum())) < 4 * float(est_t.std()) / math.sqrt(seeds)


# ------------------------------------------------------------------------------- floor, cap, purity
def test_floor_and_cap_show_in_the_weights():
    """Lowest scores sit at pi_min (weight 1/pi_min), the highest at pi = 1 (weight 1)."""
    n = 1000
    scores = torch.cat([torch.full((500,), -1.0), torch.linspace(0.01, 1, 490), torch.full((10,), 1000.0)])
    state = _scored_state(scores)
    method = TEDVariant(normalize=False, selection="pps", pi_min=0.2, max_staleness=None)
    sel = method.select(state, 0.5, epoch_generator(0, 1))
    weight = dict(zip(sel.indices.tolist(), sel.weights.tolist(), strict=True))
    assert all(weight[i] == pytest.approx(5.0) for i in range(500) if i in weight)  # floor: 1 / 0.2
    assert all(weight.get(i) == 1.0 for i in range(990, 1000))  # the cap: always kept, weight 1
    assert len(sel) == n - round(0.5 * n)


def test_pi_min_below_one_over_max_weight_is_refused():
    with pytest.raises(ValueError, match="pi_min"):
        TEDVariant(normalize=False, selection="pps", pi_min=0.05, max_weight=10)
    assert TEDVariant(normalize=False, selection="pps", pi_min=0.05, max_weight=20).pi_floor == 0.05
    assert TEDVariant(normalize=False, selection="pps").pi_floor == pytest.approx(0.1)


def test_selection_is_a_pure_function_of_scores_seed_and_epoch():
    scores = torch.randn(500, generator=torch.Generator().manual_seed(1))
    method = TEDVariant(normalize=False, selection="pps")
    a = method.select(_scored_state(scores), 0.5, epoch_generator(4, 3))
    b = TEDVariant(normalize=False, selection="pps").select(_scored_state(scores.clone()), 0.5, epoch_generator(4, 3))
    assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)
    other = method.select(_scored_state(scores), 0.5, epoch_generator(4, 4))
    assert not torch.equal(a.indices.sort().values, other.indices.sort().values)


def test_state_round_trip_gives_the_same_selection():
    """No new method state: a resumed ScoreState (with the gate's last-loss column) reselects identically."""
    n = 300
    method = TEDVariant(normalize=False, selection="pps", gate="mean_loss", compare="epoch")
    state = ScoreState(n, columns=method.columns)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(3):
        idx = torch.randperm(n, generator=gen)[:200]
        values = torch.stack([torch.rand(200, generator=gen), torch.randn(200, generator=gen)], dim=1)
        method.update(state, Observations(idx, values), epoch)
    restored = ScoreState(n, columns=method.columns)
    restored.load_state_dict(state.state_dict())
    fresh = TEDVariant(normalize=False, selection="pps", gate="mean_loss", compare="epoch")
    fresh.load_state_dict(method.state_dict())
    a, b = method.select(state, 0.5, epoch_generator(0, 3)), fresh.select(restored, 0.5, epoch_generator(0, 3))
    assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)


def test_a_million_samples_select_exactly():
    """Scale check of the vectorized rule (its speed is measured in experiments/scale_selection.py, not here)."""
    n = 1_000_000
    state = _scored_state(torch.randn(n, generator=torch.Generator().manual_seed(0)))
    state.last_epoch.copy_(torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(1)))
    for kwargs in (dict(selection="pps"), dict(selection="pps", pps_transform="rank", compare="epoch")):
        sel = TEDVariant(**kwargs).select(state, 0.7, epoch_generator(0, 4))
        assert len(sel) == 300_000 and sel.indices.unique().numel() == 300_000


# ------------------------------------------------------------------------------- staleness, gate, cohorts
def test_pps_keeps_the_staleness_guarantee():
    """Fixed scores, p = 0.5: with max_staleness=4 no sample waits more than 4 epochs; counts stay exact."""
    n, ratios = 2000, [0.0] + [0.5] * 14
    fixed = torch.rand(n, generator=torch.Generator().manual_seed(0))
    for k, bound in ((4, 4), (None, None)):
        method, state = TEDVariant(normalize=False, selection="pps", max_staleness=k), ScoreState(n)
        last, longest = torch.full((n,), -1), 0
        for epoch, ratio in enumerate(ratios):
            kept = torch.arange(n) if epoch == 0 else method.select(state, ratio, epoch_generator(0, epoch)).indices
            if epoch:
                assert kept.numel() == method.expected_kept(n, ratio, epoch)
            longest = max(longest, int((epoch - last[kept]).max()))
            last[kept] = epoch
            state.apply(kept, fixed[kept], method.alpha, epoch)
        if bound is not None:
            assert longest <= bound
        else:
            assert longest > 4  # without the rule low scores wait longer (pi_min alone bounds it in expectation)


def test_when_stale_samples_do_not_fit_the_stalest_are_kept_and_the_count_holds():
    n = 100
    state = _scored_state(torch.rand(n, generator=torch.Generator().manual_seed(2)), epoch=9)
    state.last_epoch[:60] = torch.arange(60, dtype=torch.int32) % 6  # 60 stale samples of ages 10..5
    method = TEDVariant(normalize=False, selection="pps", max_staleness=4)
    sel = method.select(state, 0.7, epoch_generator(0, 10))
    kept = set(sel.indices.tolist())
    assert len(sel) == 30
    # s stale samples fit when s + ceil(0.1 (100 - s)) <= 30: s = 22, so the 20 of ages 10 and 9 (and two
    # of age 8) are kept for sure; the floor's slots go to the others by PPS
    assert {i for i in range(60) if 10 - int(state.last_epoch[i]) >= 9} <= kept
    assert float(sel.weights.max()) <= method.max_weight


def test_gate_protects_above_mean_loss_in_both_rules():
    n = 400
    gen = torch.Generator().manual_seed(5)
    scores, losses = torch.randn(n, generator=gen), torch.rand(n, generator=gen)
    protected = set(torch.nonzero(losses.double() >= losses.double().mean()).squeeze(1).tolist())
    for selection in ("drop", "pps"):
        method = TEDVariant(normalize=False, selection=selection, gate="mean_loss", max_staleness=None)
        assert method.columns == (LAST_LOSS,) and not method.exact_kept_count
        sel = method.select(_scored_state(scores, losses=losses), 0.3, epoch_generator(0, 1))
        assert protected <= set(sel.indices.tolist())
        assert len(sel) == n - round(0.3 * n)  # enough below-mean samples to drop: the count still holds


def test_gate_update_keeps_the_last_loss_and_the_polyak_term():
    method = TEDVariant(normalize=False, selection="pps", gate="mean_loss", alpha=0.5)
    state = ScoreState(3, columns=method.columns)
    method.update(state, Observations(torch.tensor([0, 1]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])), 0)
    method.update(state, Observations(torch.tensor([0]), torch.tensor([[5.0, 6.0]])), 1)
    assert state.columns["last_loss"].tolist() == [5.0, 3.0, 0.0]  # column 0 is the loss
    assert state.score[:2].tolist() == [0.5 * 2.0 + 0.5 * 6.0, 4.0]


def test_within_cohort_ranks_and_means_match_brute_force():
    gen = torch.Generator().manual_seed(9)
    score = torch.randn(60, generator=gen)
    cohort = torch.randint(2, 6, (60,), generator=gen)
    rank = within_cohorts(torch.ones(60), cohort, "rank", score)
    size = torch.rand(60, generator=gen).double() + 0.1
    value = within_cohorts(size, cohort, "value", score)
    for c in cohort.unique().tolist():
        members = [i for i in range(60) if cohort[i] == c]
        ordered = sorted(members, key=lambda i: float(score[i]))
        for r, i in enumerate(ordered, start=1):
            assert float(rank[i]) == pytest.approx(r / len(members))
        mean = sum(float(size[i]) for i in members) / len(members)
        for i in members:
            assert float(value[i]) == pytest.approx(float(size[i]) / mean)


def test_rank_size_and_order_key_follow_the_float_order():
    x = torch.tensor([3.5, -0.0, -2.0, 0.0, 1e-30, -1e30, 7.0, -1e-30])
    key = _order_key(x)
    for i in range(x.numel()):
        for j in range(x.numel()):
            if float(x[i]) < float(x[j]):
                assert int(key[i]) < int(key[j])
    size = positive_size(torch.tensor([0.3, -1.0, 2.0, 0.1]), "rank")
    assert size.tolist() == [0.75, 0.25, 1.0, 0.5]
    value = positive_size(torch.tensor([-1.0, 0.0, 2.0]), "value")
    assert float(value.min()) > 0 and value[2] == pytest.approx(2.0, rel=1e-5)


def test_grad_norm_score_reads_the_head_gradient_norm_statistic():
    method = TEDVariant(normalize=False, selection="pps", score="grad_norm")
    assert method.head_statistic == "grand" and TED().head_statistic == "taylor"
    obs = Observations(torch.tensor([0, 1]), torch.tensor([[9.0, 0.5], [9.0, 2.0]]))
    assert method.observation_value(obs).tolist() == [0.5, 2.0]


def test_pps_selection_with_everything_forced_keeps_all_at_weight_one():
    sel = pps_selection(torch.ones(5), torch.ones(5, dtype=torch.bool), 2, 0.1, epoch_generator(0, 0))
    assert sorted(sel.indices.tolist()) == list(range(5)) and sel.weights.tolist() == [1.0] * 5


# ------------------------------------------------------------------------------- through Trainer.fit
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(selection="pps", score="grad_norm", normalize=False),
        dict(selection="pps", gate="mean_loss", compare="epoch", normalize=False),
    ],
)
def test_pps_variants_train_through_trainer_fit(mnist_train, kwargs):
    """Each kept sample is trained once per epoch with its Horvitz-Thompson weight; grad-norm scores are >= 0."""
    import lightning as L
    from conftest import make_trainer, subset
    from lightning.pytorch.callbacks import Callback

    from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
    from lightning_ted.zoo.demo import ImageClassifier

    seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    class Recorder(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            ctx = trainer.datamodule.batch_context
            seen.setdefault(trainer.current_epoch, []).append((ctx.index.clone(), ctx.weight.clone()))

    n, epochs = 640, 4
    L.seed_everything(0, verbose=False)
    method = TEDVariant(**kwargs)
    dm = DynamicPruningDataModule(
        subset(mnist_train, n), method=method, schedule=RollerCoasterSchedule(ratio=0.5), batch_size=64, seed=0
    )
    trainer = make_trainer(epochs, callbacks=[TEDPruningCallback(), Recorder()])
    trainer.fit(ImageClassifier(one_cycle=method.exact_kept_count), datamodule=dm)
    pruned_epochs = [e for e in range(epochs) if dm.schedule.prune_ratio(e) > 0]
    assert pruned_epochs
    for e in range(epochs):
        index = torch.cat([i for i, _ in seen[e]])
        weight = torch.cat([w for _, w in seen[e]])
        assert index.unique().numel() == index.numel() == int(dm.kept_history[e])
        assert float(weight.min()) >= 1.0 and float(weight.max()) <= method.max_weight
        if e in pruned_epochs and method.exact_kept_count:
            assert index.numel() == method.expected_kept(n, dm.schedule.prune_ratio(e), e)
    assert torch.isfinite(dm.state.score).all()
    if kwargs.get("score") == "grad_norm":
        assert float(dm.state.score.min()) >= 0.0


@pytest.mark.parametrize("kwargs", [{}, {"selection": "pps"}, {"selection": "pps", "pps_transform": "rank"}])
@pytest.mark.parametrize("ratio", [0.3, 0.86])
def test_normalized_weights_average_one_and_keep_their_ratios(kwargs, ratio):
    n = 5000
    state = _scored_state(torch.randn(n, generator=torch.Generator().manual_seed(0)))
    plain = TEDVariant(normalize=False, **kwargs).select(state, ratio, epoch_generator(0, 3))
    normal = TEDVariant(normalize=True, **kwargs).select(state, ratio, epoch_generator(0, 3))
    assert torch.equal(plain.indices, normal.indices)  # the same kept set
    w, v = plain.weights, normal.weights
    assert float(v.mean()) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(v * w.mean(), w, rtol=1e-5)  # relative weights unchanged
    assert float(v.max()) <= float(w.max()) + 1e-6  # never heavier than the bounded weights
    positions = torch.arange(len(normal))
    assert torch.equal(normal.weight_at(positions), v)


@pytest.mark.parametrize(("ratio", "scaled"), [(0.3, False), (0.7, True)])
def test_a_step_scale_bound_keeps_raw_weights_below_it_and_caps_the_mean_above(ratio, scaled):
    """``normalize=2.0`` (= 1 / (1 - q)): the ranked drop at p = 0.3 < q (mean weight 1 / 0.7) keeps its raw,
    unbiased weights; the uniform drop at p = 0.7 (mean 1 / 0.3) is scaled down to mean 2, ratios kept."""
    n = 4000
    state = _scored_state(torch.randn(n, generator=torch.Generator().manual_seed(1)))
    plain = TED(normalize=False).select(state, ratio, epoch_generator(0, 3))
    bounded = TED(normalize=2.0).select(state, ratio, epoch_generator(0, 3))
    assert torch.equal(plain.indices, bounded.indices)
    w, v = plain.weights, bounded.weights
    if scaled:
        assert float(w.mean()) > 2.0 and float(v.mean()) == pytest.approx(2.0, abs=1e-5)
        assert torch.allclose(v * (w.mean() / 2.0), w, rtol=1e-5)
    else:
        assert float(w.mean()) <= 2.0 and torch.equal(v, w)


@pytest.mark.parametrize("bad", [0.5, -1.0, "yes"])
def test_user_sets_a_step_scale_bound_below_one_and_is_told_what_normalize_takes(bad):
    with pytest.raises(ValueError, match="normalize must be True, False or a step-scale bound >= 1"):
        TED(normalize=bad)
