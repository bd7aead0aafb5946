"""SeTa: the random stage, 1-D k-means groups, the sliding window and the partial anneal, on hand-made
losses checked against brute force, and one short real Trainer.fit."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from conftest import make_trainer, subset

import lightning_ted
from lightning_ted import ConstantSchedule, DynamicPruningDataModule, TEDPruningCallback
from lightning_ted.core.selection import epoch_generator
from lightning_ted.core.state import Observations, ScoreState
from lightning_ted.methods import METHODS, SeTa, build_method
from lightning_ted.methods.seta import kmeans_1d
from lightning_ted.zoo.demo import ImageClassifier

CENTERS = (0.1, 1.0, 2.0, 3.5, 5.0, 6.5, 8.0, 9.5, 11.0, 12.5)


# ------------------------------------------------------------------------------- helpers
def _clusters(sizes) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses in clearly separated clusters (cluster c around CENTERS[c]), shuffled; and each sample's cluster."""
    cluster = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    jitter = torch.linspace(-0.05, 0.05, cluster.numel())
    loss = torch.tensor(CENTERS)[cluster] + jitter[torch.randperm(cluster.numel(), generator=_gen(99))]
    perm = torch.randperm(cluster.numel(), generator=_gen(7))
    return loss[perm].float(), cluster[perm]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _scored(loss: torch.Tensor, epoch: int, method: SeTa | None = None) -> ScoreState:
    """A state whose samples all last had ``loss`` in ``epoch - 1`` (the state selects ``epoch`` next)."""
    method = method or SeTa()
    state = ScoreState(loss.numel())
    if epoch > 0:
        zeros = torch.zeros_like(loss)
        method.update(state, Observations(torch.arange(loss.numel()), torch.stack([loss, zeros], 1)), epoch - 1)
    return state


def _int_keep(n: int, r: float) -> int:
    return math.floor((1 - Fraction(str(r))) * n)  # int((1 - r) N) in exact arithmetic


def _sse(values: list[float], bounds: list[int]) -> float:
    total = 0.0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            mean = sum(values[a:b]) / (b - a)
            total += sum((v - mean) ** 2 for v in values[a:b])
    return total


def _brute_force_kmeans_sse(values: list[float], k: int) -> float:
    """Optimal 1-D k-means cost by the plain O(k m^2) dynamic program over contiguous groups."""
    m = len(values)
    best = [[math.inf] * (m + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for g in range(1, k + 1):
        for j in range(1, m + 1):
            best[g][j] = min(best[g - 1][i] + _sse(values[i:j], [0, j - i]) for i in range(j))
    return min(best[g][m] for g in range(1, k + 1))


# ------------------------------------------------------------------------------- registry and defaults
def test_seta_is_registered_exported_and_reads_the_latest_loss():
    """``"seta"`` builds SeTa; it scores by the last loss (no EMA), weighs 1 and keeps a score-dependent count."""
    assert METHODS["seta"] is SeTa and lightning_ted.SeTa is SeTa and isinstance(build_method("seta"), SeTa)
    method = SeTa()
    assert method.head_statistic is None and not method.columns and not method.exact_kept_count
    assert (method.num_groups, method.window, method.delta, method.reweight) == (5, 4, 0.875, False)
    state = ScoreState(3)
    index = torch.tensor([0, 1, 2])
    method.update(state, Observations(index, torch.tensor([[2.0, 9.0], [1.0, 9.0], [0.5, 9.0]])), 0)
    method.update(state, Observations(index[:2], torch.tensor([[0.25, 9.0], [4.0, 9.0]])), 1)
    assert state.score.tolist() == [0.25, 4.0, 0.5]  # overwritten by the newest loss, the term column unused


# ------------------------------------------------------------------------------- window positions
@pytest.mark.parametrize(
    "k, scale, width, starts",
    [
        (5, 0.9, 4, [1, 0, 1, 0, 1, 0]),  # round(4.5) = 4: the window alternates between its two positions
        (10, 0.5, 5, [1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0]),  # t mod 6
        (10, 0.6, 6, [1, 2, 3, 4, 0, 1]),  # SeTa's ImageNet setting: t mod 5
        (5, 0.5, 2, [1, 2, 3, 0, 1]),  # round(2.5) = 2, half to even
        (3, 0.5, 2, [1, 0, 1]),  # round(1.5) = 2
    ],
)
def test_window_width_and_start_over_epochs(k, scale, width, starts):
    """w = round(K ws) with Python's rounding; start = t mod (K - w + 1); t = 0 keeps every group."""
    method = SeTa(num_groups=k, window_scale=scale)
    assert method.window == width
    assert method.window_groups(0) == range(k)
    assert [method.window_groups(t).start for t in range(1, len(starts) + 1)] == starts
    assert all(len(method.window_groups(t)) == width for t in range(1, 20))


@pytest.mark.parametrize(
    "k, scale, sizes",
    [(5, 0.9, (9, 3, 6, 2, 5)), (10, 0.5, (4, 7, 2, 5, 3, 6, 2, 8, 3, 4))],
)
def test_selection_keeps_exactly_the_window_groups_of_separated_clusters(k, scale, sizes):
    """With r = 0, epoch t keeps exactly the samples of the clusters in the window (brute force by cluster)."""
    loss, cluster = _clusters(sizes)
    method = SeTa(num_groups=k, window_scale=scale)
    for t in range(0, 14):
        sel = method.select(_scored(loss, t), 0.0, _gen(t))
        window = method.window_groups(t)
        expected = {i for i in range(loss.numel()) if int(cluster[i]) in window}
        assert set(sel.indices.tolist()) == expected, t
        assert sel.indices.tolist() == sorted(expected) and sel.weights.tolist() == [1.0] * len(expected)


# ------------------------------------------------------------------------------- grouping
def test_kmeans_recovers_separated_clusters_of_unequal_size_sorted_easy_to_hard():
    """Each cluster is one group, groups ascend by mean; an equal-count start would split the big cluster."""
    sizes = (50, 5, 20, 3, 22)
    loss, _ = _clusters(sizes)
    values = loss.sort().values
    bounds = kmeans_1d(values, 5).tolist()
    assert bounds == [0, 50, 55, 75, 78, 100]
    means = [float(values[a:b].mean()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert means == sorted(means)
    big = torch.cat([torch.full((s * 2000,), c) for c, s in zip(CENTERS, sizes, strict=False)])
    big = (big + 0.05 * torch.randn(big.numel(), generator=_gen(3))).sort().values
    assert kmeans_1d(big, 5).tolist() == [0, 100000, 110000, 150000, 156000, 200000]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 4])
def test_kmeans_cost_is_the_brute_force_optimum(seed, k):
    """On up to ``bins`` values the grouping is the exact optimum of 1-D k-means (plain dynamic program)."""
    g = _gen(seed)
    values = torch.cat([torch.rand(14, generator=g), 3 * torch.rand(6, generator=g) ** 3]).sort().values.double()
    bounds = kmeans_1d(values, k).tolist()
    assert bounds[0] == 0 and bounds[-1] == 20 and bounds == sorted(bounds)
    vals = values.tolist()
    assert _sse(vals, bounds) == pytest.approx(_brute_force_kmeans_sse(vals, k), rel=1e-9, abs=1e-12)


def test_kmeans_equal_values_and_few_distinct_values():
    """All equal: K equal-count groups (SeTa's chunks); fewer distinct values than K: the hardest groups are empty,
    and equal values never straddle two groups."""
    assert kmeans_1d(torch.full((10,), 2.0), 5).tolist() == [0, 2, 4, 6, 8, 10]
    assert kmeans_1d(torch.tensor([1.0, 1, 1, 2, 2, 2, 2]), 5).tolist() == [0, 3, 7, 7, 7, 7]


def test_unseen_samples_count_as_the_initial_high_loss():
    """An unscored sample is grouped as loss 3.0: above these trained losses, it lands in the hardest group."""
    loss, cluster = _clusters((6, 5, 7))  # clusters around 0.1, 1.0, 2.0
    state = _scored(loss, 2)
    unseen = torch.tensor([3, 11])
    state.score[unseen] = math.inf
    method = SeTa(num_groups=4, window_scale=0.75)  # w = 3: t = 2 keeps groups 0..2, t = 1 groups 1..3
    kept2 = set(method.select(state, 0.0, _gen(0)).indices.tolist())
    assert kept2 == set(range(18)) - set(unseen.tolist())
    state.last_epoch.fill_(0)  # selecting t = 1
    kept1 = set(method.select(state, 0.0, _gen(0)).indices.tolist())
    assert kept1 == {i for i in range(18) if int(cluster[i]) >= 1 or i in unseen.tolist()}


# ------------------------------------------------------------------------------- random stage and anneal
@pytest.mark.parametrize("n, r", [(100, 0.3), (100, 0.55), (37, 0.5), (24, 0.7)])
def test_random_stage_keeps_int_of_one_minus_r_n_before_the_window(n, r):
    """Epoch 0 keeps a uniform subset of int((1 - r) N); later epochs keep that epoch's subset's window groups."""
    sizes = [n // 5] * 4 + [n - 4 * (n // 5)]
    loss, cluster = _clusters(sizes)
    method = SeTa()
    random_stage = set(method.select(_scored(loss, 0), r, _gen(5)).indices.tolist())  # t = 0: the draw alone
    assert len(random_stage) == _int_keep(n, r)
    for t in (1, 2, 3):
        sel = method.select(_scored(loss, t), r, _gen(5))
        values = loss[torch.tensor(sorted(random_stage))].sort().values
        bounds = kmeans_1d(values, 5)
        window = method.window_groups(t)
        low, high = values[int(bounds[window.start])], values[int(bounds[window.stop]) - 1]
        assert set(sel.indices.tolist()) == {i for i in random_stage if low <= float(loss[i]) <= high}
        assert len(sel) < len(random_stage)  # the window dropped a group


def test_partial_anneal_keeps_a_fresh_random_subset_without_the_window():
    """With max_epochs=8, delta=0.75 the epochs t + 1 > 6 keep a random int((1 - r) N) from every group."""
    loss, cluster = _clusters((30, 10, 20, 15, 25))
    n, r = loss.numel(), 0.4
    method = SeTa(max_epochs=8, delta=0.75)
    assert [method.annealing(e) for e in range(8)] == [False] * 6 + [True] * 2
    windowed = method.select(_scored(loss, 5, method), r, _gen(5))
    assert len(windowed) < _int_keep(n, r)
    for epoch in (6, 7):
        sel = method.select(_scored(loss, epoch, method), r, epoch_generator(0, epoch))
        assert len(sel) == _int_keep(n, r) and sel.weights.tolist() == [1.0] * len(sel)
        assert set(cluster[sel.indices].tolist()) == set(range(5))
    anneal = [method.select(_scored(loss, e, method), r, epoch_generator(0, e)).indices for e in (6, 7)]
    assert not torch.equal(anneal[0], anneal[1])  # fresh each epoch


def test_reweight_option_weighs_kept_samples_one_over_one_minus_r():
    loss, _ = _clusters((10, 10, 10, 10, 10))
    sel = SeTa(reweight=True).select(_scored(loss, 3), 0.5, _gen(0))
    assert sel.weights.tolist() == [2.0] * len(sel)
    assert SeTa().select(_scored(loss, 3), 0.5, _gen(0)).indices.tolist() == sel.indices.tolist()


def test_selection_is_deterministic_in_seed_and_epoch():
    loss, _ = _clusters((20, 15, 25, 10, 30))
    method = SeTa()
    state = _scored(loss, 3)
    a = method.select(state, 0.3, epoch_generator(1, 3)).indices
    assert torch.equal(a, method.select(state, 0.3, epoch_generator(1, 3)).indices)
    assert not torch.equal(a, method.select(state, 0.3, epoch_generator(2, 3)).indices)


def test_state_dict_round_trip_gives_the_same_selection():
    loss, _ = _clusters((20, 15, 25, 10, 30))
    method, state = SeTa(), _scored(loss, 4)
    state.score[:7] = math.inf
    restored_method, restored = SeTa(), ScoreState(loss.numel())
    restored_method.load_state_dict(method.state_dict())
    restored.load_state_dict(state.state_dict())
    assert torch.equal(
        method.select(state, 0.3, epoch_generator(0, 4)).indices,
        restored_method.select(restored, 0.3, epoch_generator(0, 4)).indices,
    )
    with pytest.raises(ValueError, match="'infobatch'.*'seta'"):
        SeTa().load_state_dict(build_method("infobatch").state_dict())


def test_million_samples_select_is_vectorized_and_well_formed():
    """N = 1e6 in one call (no per-sample loop): distinct in-range indices, within the random stage's count."""
    n = 1_000_000
    state = ScoreState(n)
    state.score = torch.rand(n, generator=_gen(0)).exp_()
    state.last_epoch.fill_(2)
    sel = SeTa(num_groups=10, window_scale=0.5).select(state, 0.3, _gen(1))
    idx = sel.indices
    assert 0 < len(sel) < _int_keep(n, 0.3) and idx.unique().numel() == idx.numel()
    assert int(idx.min()) >= 0 and int(idx.max()) < n


# ------------------------------------------------------------------------------- user mistakes
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_groups": 5, "window_scale": 0.1}, "window of round"),
        ({"window_scale": 1.5}, "window_scale must be in"),
        ({"num_groups": 0}, "num_groups must be a positive integer"),
        ({"delta": 0.0}, "delta must be in"),
        ({"max_epochs": 0}, "max_epochs must be a positive integer"),
        ({"initial_score": math.inf}, "initial_score must be finite"),
    ],
)
def test_user_gives_an_invalid_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SeTa(**kwargs)


def test_user_sets_max_epochs_below_the_trainers():
    loss, _ = _clusters((10, 10, 10, 10, 10))
    with pytest.raises(ValueError, match=r"SeTa\(max_epochs=4\) is selecting epoch 4.*Trainer\(max_epochs\)"):
        SeTa(max_epochs=4).select(_scored(loss, 4), 0.3, _gen(0))


def test_user_gives_a_prune_ratio_of_one():
    with pytest.raises(ValueError, match=r"prune ratio r must be in \[0, 1\)"):
        SeTa().select(ScoreState(10), 1.0, _gen(0))


# ------------------------------------------------------------------------------- real training
@pytest.mark.parametrize("method", ["seta", SeTa(delta=0.5)], ids=["by-name", "longer-anneal"])
def test_seta_trains_on_real_data(mnist_train, method):
    """Trainer.fit: epoch 0 trains the random half, windowed epochs fewer, each kept sample once with weight 1."""
    import lightning as L

    train, epochs, r = subset(mnist_train, 1200), 4, 0.5
    L.seed_everything(0, verbose=False)
    dm = DynamicPruningDataModule(
        train, method=method, schedule=ConstantSchedule(r, warmup_epochs=0, anneal=0.0), batch_size=100
    )
    kept, seen, weights = {}, {}, []

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            e, ctx = trainer.current_epoch, trainer.datamodule.batch_context
            kept.setdefault(e, trainer.datamodule.current_selection.indices.clone())
            seen.setdefault(e, []).append(ctx.index.clone())
            weights.append(ctx.weight.clone())

    make_trainer(epochs, callbacks=[TEDPruningCallback(progress_bar=False), Recorder()]).fit(
        ImageClassifier(lr=0.05, one_cycle=False), datamodule=dm
    )
    half = _int_keep(len(train), r)
    history = dm.kept_history.tolist()
    # max_epochs comes from the Trainer: the partial anneal (epochs with t + 1 > delta * 4) keeps the random half
    windowed = 2 if isinstance(method, SeTa) else 3
    assert history[0] == half and all(0 < k < half for k in history[1:windowed])
    assert all(k == half for k in history[windowed:])
    for e in range(epochs):
        assert torch.equal(torch.cat(seen[e]).sort().values, kept[e].sort().values)  # each kept sample once
    assert torch.cat(weights).eq(1.0).all()
    assert dm.saved_fraction(epochs - 1) == pytest.approx(1 - sum(history) / (len(train) * epochs))
    assert dm.saved_fraction(epochs - 1) > r
    trained = torch.unique(torch.cat([torch.cat(s) for s in seen.values()]))
    assert torch.isfinite(dm.state.score[trained]).all()
    assert int(torch.isinf(dm.state.score).sum()) == len(train) - trained.numel()  # never drawn: still unscored


def test_seta_takes_the_run_length_from_the_trainer():
    method = SeTa()
    method.bind(16)
    assert method.max_epochs == 16 and method.annealing(14) and not method.annealing(13)
    same = SeTa(max_epochs=16)
    same.bind(16)
    assert same.max_epochs == 16


def test_user_gives_seta_a_max_epochs_other_than_the_trainers():
    with pytest.raises(ValueError, match=r"SeTa\(max_epochs=10\) but the Trainer runs max_epochs=16"):
        SeTa(max_epochs=10).bind(16)
