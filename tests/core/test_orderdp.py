"""OrderDP: its selection against brute force and against the official rule, its kept count, unscored samples,
a real ``Trainer.fit``, and the arguments a user can get wrong."""

from __future__ import annotations

import doctest
import itertools
import math
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from conftest import make_trainer
from lightning.pytorch.callbacks import Callback
from test_pruned_reference import MLP

from lightning_ted import ConstantSchedule, DynamicPruningDataModule, OrderDP, TEDPruningCallback, build_method
from lightning_ted.core.state import Observations, ScoreState
from lightning_ted.methods import METHODS, orderdp
from lightning_ted.methods.base import TrainedBefore

INF = math.inf
RATIOS = [0.0, 0.05, 0.2, 0.3625, 0.5, 0.7, 0.9, 0.95]
# (subset, keep) settings of the official scripts: class defaults, ImageNet r50 and r18, README's CIFAR, CLI default
OFFICIAL_SETTINGS = [(0.75, 0.85), (0.75, 0.8), (0.8, 0.9), (0.8, 0.375), (0.5, 0.5)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _state(scores) -> ScoreState:
    """A state holding ``scores`` (``inf`` = never scored)."""
    state = ScoreState(len(scores))
    state.score.copy_(torch.as_tensor(scores, dtype=torch.float32))
    state.seen.copy_(torch.isfinite(state.score).to(torch.int32))
    return state


def _random_scores(n: int, n_unscored: int, seed: int, ties: bool = False) -> list[float]:
    """``n`` scores, ``n_unscored`` of them ``inf`` at random places; with ``ties`` the losses take 3 values."""
    rng = np.random.default_rng(seed)
    losses = rng.integers(0, 3, n).astype(float) if ties else rng.exponential(size=n)
    losses[rng.permutation(n)[:n_unscored]] = INF
    return [float(v) for v in np.float32(losses)]


def _kept(sel) -> set[int]:
    return set(sel.indices.tolist())


# ------------------------------------------------------------------------------- brute force
def _brute_force(scores: list[float], order: list[int], n_subset: int, n_keep: int) -> set[int]:
    """The documented rule, one plain step at a time: walk the epoch's random order, unscored samples first, and
    take ``n_subset`` of them; rank those by loss, highest first (unscored above all), earlier in the order
    first among equals; keep ``n_keep``."""
    walk = [i for i in order if scores[i] == INF] + [i for i in order if scores[i] != INF]
    subset = walk[:n_subset]
    position = {i: order.index(i) for i in subset}
    ranked = sorted(subset, key=lambda i: (-scores[i], position[i]))
    return set(ranked[:n_keep])


@pytest.mark.parametrize("n", [7, 13, 20])
@pytest.mark.parametrize("setting", [(0.75, 0.85), (0.8, 0.375), (1.0, 0.6), (0.6, 1.0)])
def test_orderdp_selection_matches_a_brute_force_reimplementation(n, setting):
    """For unscored counts from none to all, tied and distinct losses, every ratio and five generators, the kept
    set is the brute force's, drawn from the same random order (``randperm`` of the epoch's generator)."""
    method = OrderDP(*setting)
    for n_unscored, ties, p, seed in itertools.product([0, 2, n // 2, n], [False, True], RATIOS, range(5)):
        scores = _random_scores(n, n_unscored, seed, ties)
        sel = method.select(_state(scores), p, _gen(seed))
        n_subset, n_keep = method.stage_sizes(n, p)
        order = torch.randperm(n, generator=_gen(seed)).tolist() if n_keep < n else list(range(n))
        assert _kept(sel) == _brute_force(scores, order, n_subset, n_keep), (n_unscored, ties, p, seed)
        assert sel.indices.tolist() == sorted(_kept(sel)) and sel.weights.tolist() == [1.0] * n_keep


# ------------------------------------------------------------------------------- fidelity to the official code
def _official_prune(scores: np.ndarray, selected_indices: np.ndarray, top_q: int) -> np.ndarray:
    """A literal numpy re-statement of ``OrderDP.prune`` in ``cifar/orderDP/orderDP.py`` of
    github.com/shengze-xu/OrderDP (commit b48eaccef9ed4390919a7370b4862fcf8abbc86d), after its random draw
    ``np.random.choice(N, random_len, replace=False)``, which is passed in as ``selected_indices``: if the
    subset is kept whole it is the result, else the ``top_q`` largest scores of the subset (its ``torch.topk``
    with ``largest=True``) index into it."""
    if top_q == len(selected_indices):
        return selected_indices
    subset_scores = scores[selected_indices]
    top_indices = np.argsort(-subset_scores, kind="stable")[:top_q]
    return selected_indices[top_indices]


def _official_sizes(n: int, random_len_ratio: float, top_q_ratio: float) -> tuple[int, int]:
    """The official constructor's sizes: ``random_len = int(random_len_ratio * N)``, ``top_q = int(top_q_ratio *
    random_len)`` (same file, ``OrderDP.__init__``)."""
    random_len = int(random_len_ratio * n)
    return random_len, int(top_q_ratio * random_len)


def _official_keep_probability(n: int, s: int, q: int, j: int) -> float:
    """Probability that the sample of the ``j``-th highest loss (1-based, distinct losses) survives the official
    rule: it is drawn (``s / n``) and fewer than ``q`` of the ``j - 1`` higher-loss samples are among the other
    ``s - 1`` drawn, a hypergeometric sum over its rank ``l`` in the subset. This is the expression of the
    official file's ``compute_expression(n, s, j, q)`` (commented out there), re-stated."""
    lo = max(1, s - n + j)
    within = sum(math.comb(j - 1, r - 1) * math.comb(n - j, s - r) for r in range(lo, min(q, j) + 1))
    return (s / n) * within / math.comb(n - 1, s - 1)


@pytest.mark.parametrize("n", [20, 40, 80])
@pytest.mark.parametrize("setting", OFFICIAL_SETTINGS)
def test_orderdp_given_the_official_random_subset_keeps_the_official_survivors(n, setting):
    """Mirrors ``OrderDP.prune`` of the official ``cifar/orderDP/orderDP.py``: with every sample scored (distinct
    last losses) our random stage is the first ``S`` of the epoch's random order; handed that subset, the
    official top-``q`` step keeps exactly our kept set, at the paper's ratio and at others."""
    method = OrderDP(*setting)
    for p, seed in itertools.product([method.paper_ratio, 0.2, 0.5, 0.8], range(4)):
        scores = np.asarray(_random_scores(n, 0, seed + 100), dtype=np.float32)
        n_subset, n_keep = method.stage_sizes(n, p)
        selected = torch.randperm(n, generator=_gen(seed)).numpy()[:n_subset]
        official = _official_prune(scores, selected, n_keep)
        assert _kept(method.select(_state(scores), p, _gen(seed))) == set(official.tolist()), (p, seed)


@pytest.mark.parametrize("setting", OFFICIAL_SETTINGS)
def test_orderdp_at_the_paper_ratio_uses_the_official_sizes(setting):
    """At ``paper_ratio = 1 - subset * keep`` our random subset and kept count are the official constructor's
    ``int(subset N)`` and ``int(keep int(subset N))`` up to rounding: ``S`` within one sample, ``K`` within two
    (one ``round`` here against two nested ``int`` there), for every N from 5 to 2000."""
    method = OrderDP(*setting)
    for n in range(5, 2001):
        (s, k), (s_official, k_official) = method.stage_sizes(n, method.paper_ratio), _official_sizes(n, *setting)
        assert abs(s - s_official) <= 1 and abs(k - k_official) <= 2, (n, (s, k), (s_official, k_official))
        assert k == n - round(method.paper_ratio * n)  # the schedule's count, exactly


@pytest.mark.parametrize("n, setting", [(80, (0.75, 0.85)), (20, (0.8, 0.375)), (40, (0.5, 0.5))])
def test_orderdp_keeps_each_loss_rank_as_often_as_the_official_rule(n, setting):
    """Where our sizes equal the official ones (N chosen so), each sample's share of 3000 epochs kept matches the
    official rule's exact keep probability for its loss rank (within 0.05, about 5 standard errors): the two
    rules draw the same distribution of kept sets, not only the same kept count."""
    method = OrderDP(*setting)
    s, q = _official_sizes(n, *setting)
    assert method.stage_sizes(n, method.paper_ratio) == (s, q)
    scores = torch.tensor(_random_scores(n, 0, 7))
    state, counts = _state(scores.tolist()), torch.zeros(n)
    for seed in range(3000):
        counts[method.select(state, method.paper_ratio, _gen(seed)).indices] += 1
    rank = torch.empty(n, dtype=torch.int64)
    rank[scores.argsort(descending=True)] = torch.arange(1, n + 1)
    exact = torch.tensor([_official_keep_probability(n, s, q, int(j)) for j in rank], dtype=torch.float32)
    assert float(exact.sum()) == pytest.approx(q)
    assert torch.allclose(counts / 3000, exact, atol=0.05), (counts / 3000 - exact).abs().max()
    assert float(exact[rank == 1]) == pytest.approx(s / n) and float(exact[rank == n]) < 1e-12


# ------------------------------------------------------------------------------- kept count, warm-up, unscored
@pytest.mark.parametrize("n", [1, 2, 10, 37, 200])
def test_orderdp_keeps_expected_kept_at_every_ratio_and_everything_at_ratio_zero(n):
    """For every ratio the kept count is ``expected_kept`` (``N - round(pN)``, so ``exact_kept_count``) and both
    ends of ``kept_range`` whatever was scored; ratio 0 (warm-up, anneal) keeps all N, weight 1."""
    method = OrderDP()
    assert method.exact_kept_count and not method.reweights and not method.keeps_unscored
    for p, n_unscored, seed in itertools.product([*RATIOS, 0.99], [0, n // 3, n], range(3)):
        sel = method.select(_state(_random_scores(n, n_unscored, seed)), p, _gen(seed))
        expected = method.expected_kept(n, p, 3)
        assert len(sel) == expected == n - round(p * n), (p, n_unscored, seed)
        assert method.kept_range(n, p, 3, TrainedBefore(0, n // 2, False)) == (expected, expected)
        assert sel.num_unit_weight == len(sel) and sel.mean_weight == 1.0 and sel.target_ratio == p
        s, k = method.stage_sizes(n, p)
        assert k == expected and k <= s <= n
    everything = method.select(_state(_random_scores(n, 0, 0)), 0.0, _gen(0))
    assert everything.indices.tolist() == list(range(n)) and everything.weights.tolist() == [1.0] * n


def test_orderdp_splits_the_saving_between_its_stages_in_the_papers_proportion():
    """The stage fractions multiply to ``1 - p``, split ``ln(1 - p)`` as ``ln subset : ln keep``, are the paper's
    ``subset`` and ``keep`` at ``paper_ratio``, shrink together as the ratio grows, and ``subset=1`` /
    ``keep=1`` make one stage the whole rule."""
    n = 100_000
    for setting in OFFICIAL_SETTINGS:
        method = OrderDP(*setting)
        assert method.stage_sizes(n, method.paper_ratio)[0] == round(setting[0] * n)
        previous = (n, n)
        for p in RATIOS[1:]:
            s, k = method.stage_sizes(n, p)
            assert k / n == pytest.approx(1 - p, abs=1 / n)  # the product of the two fractions
            share = math.log(setting[0]) / math.log(setting[0] * setting[1])
            assert math.log(s / n) / math.log(k / n) == pytest.approx(share, abs=1e-3)  # the paper's split
            assert s < previous[0] and k / s < previous[1] / previous[0] + 1e-9
            previous = (s, k)
    assert OrderDP(subset=1.0, keep=0.5).stage_sizes(n, 0.3) == (n, 70_000)  # highest loss only
    assert OrderDP(subset=0.5, keep=1.0).stage_sizes(n, 0.3) == (70_000, 70_000)  # random only


def test_orderdp_keeps_every_unscored_sample_while_they_fit():
    """Unscored samples (``+inf``) join the random subset first and rank highest: all are kept whenever they
    number at most the kept count, and only unscored ones are kept when they outnumber it."""
    n, method = 60, OrderDP()
    for n_unscored, p, seed in itertools.product([1, 10, 30, 45, 60], [0.2, 0.5, 0.8], range(5)):
        scores = _random_scores(n, n_unscored, seed)
        unscored = {i for i, v in enumerate(scores) if v == INF}
        kept = _kept(method.select(_state(scores), p, _gen(seed)))
        if n_unscored <= len(kept):
            assert unscored <= kept, (n_unscored, p, seed)
        else:
            assert kept <= unscored, (n_unscored, p, seed)


def test_orderdp_draws_unscored_samples_beyond_the_kept_count_at_random_not_by_index():
    """With nothing scored (the first epoch without warm-up) the kept set is a uniform draw: it changes with the
    generator, and over many epochs every sample is kept about ``1 - p`` of the time."""
    n, p, method = 40, 0.5, OrderDP()
    state, counts = _state([INF] * n), torch.zeros(n)
    sets = set()
    for seed in range(2000):
        sel = method.select(state, p, _gen(seed))
        counts[sel.indices] += 1
        sets.add(tuple(sel.indices.tolist()))
    assert len(sets) > 1900 and torch.allclose(counts / 2000, torch.full((n,), 1 - p), atol=0.05)


def test_orderdp_is_deterministic_given_the_generator_and_ranks_the_last_loss():
    """The same generator gives the same kept set; the score is the last observed training loss (``alpha = 0``:
    a later visit replaces the earlier value)."""
    method = OrderDP()
    state = _state(_random_scores(50, 5, 3))
    first, again = method.select(state, 0.5, _gen(11)), method.select(state, 0.5, _gen(11))
    assert torch.equal(first.indices, again.indices)
    assert not torch.equal(first.indices, method.select(state, 0.5, _gen(12)).indices)
    fresh = ScoreState(3)
    method.update(fresh, Observations(torch.tensor([0, 1]), torch.tensor([[1.0, 0.0], [2.0, 0.0]])), 0)
    method.update(fresh, Observations(torch.tensor([0]), torch.tensor([[5.0, 9.0]])), 1)
    assert fresh.score.tolist() == [5.0, 2.0, INF]


def test_orderdp_registration_config_and_doctest():
    """Registered as ``"orderdp"``, exported at the top level, its config names both arguments, and the class
    docstring's example runs."""
    assert METHODS["orderdp"] is OrderDP and isinstance(build_method("orderdp"), OrderDP)
    assert OrderDP(keep=0.9).config == {
        "class": "lightning_ted.methods.orderdp.OrderDP", "subset": 0.75, "keep": 0.9, "max_weight": 10.0,
    }  # fmt: skip
    assert doctest.testmod(orderdp, verbose=False).failed == 0
    assert OrderDP().paper_ratio == pytest.approx(0.3625)


# ------------------------------------------------------------------------------- Trainer.fit
class _Trained(Callback):
    """The indices each epoch trained, in batches, and the optimizer steps the datamodule planned at fit start."""

    def __init__(self) -> None:
        self.indices: dict[int, list[torch.Tensor]] = {}
        self.selection: dict[int, torch.Tensor] = {}
        self.planned: int | None = None

    def on_fit_start(self, trainer, pl_module):
        self.planned = trainer.datamodule.total_optimizer_steps()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        epoch, dm = trainer.current_epoch, trainer.datamodule
        self.selection.setdefault(epoch, dm.current_selection.indices.clone())
        self.indices.setdefault(epoch, []).append(dm.batch_context.index.clone())


@pytest.mark.parametrize("warmup, accumulate", [(0, 1), (1, 3)])
def test_orderdp_trains_its_plan_through_trainer_fit(warmup, accumulate):
    """A real fit (CPU, tiny MLP, 200 random samples, ratio 0.4): every epoch trains exactly its kept set, once,
    ``kept_history`` is the schedule's count, ``total_optimizer_steps()`` is the steps taken, and without
    warm-up the second epoch trains every sample the first one skipped (unscored samples are kept)."""
    n, epochs, batch = 200, 5, 16
    g = _gen(0)
    data = torch.utils.data.TensorDataset(torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g))
    L.seed_everything(0, verbose=False)
    dm = DynamicPruningDataModule(
        data, method="orderdp", schedule=ConstantSchedule(0.4, warmup_epochs=warmup), batch_size=batch, seed=3
    )
    probe = _Trained()
    trainer = make_trainer(
        epochs, callbacks=[TEDPruningCallback(progress_bar=False, summary=False), probe],
        accumulate_grad_batches=accumulate,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(MLP(lr=0.05), datamodule=dm)
    assert isinstance(dm.method, OrderDP)
    for epoch in range(epochs):
        trained = torch.cat(probe.indices[epoch])
        expected = n - round(dm.schedule.prune_ratio(epoch) * n)
        assert trained.numel() == int(dm.kept_history[epoch]) == expected, (epoch, dm.kept_history.tolist())
        assert torch.equal(trained.sort().values, probe.selection[epoch].sort().values)
    ratios = [dm.schedule.prune_ratio(e) for e in range(epochs)]
    assert (ratios[0] == 0.0) == (warmup == 1) and any(r > 0 for r in ratios)
    assert probe.planned == trainer.global_step
    if warmup == 0:
        skipped = set(range(n)) - set(torch.cat(probe.indices[0]).tolist())
        assert len(skipped) == round(0.4 * n) and skipped <= set(torch.cat(probe.indices[1]).tolist())
    assert bool((dm.state.seen > 0).all()) and bool(torch.isfinite(dm.state.score).all())


# ------------------------------------------------------------------------------- user mistakes
def test_orderdp_subset_above_one_is_refused():
    with pytest.raises(ValueError, match=r"subset must be a number in \(0, 1\].*got 1\.5"):
        OrderDP(subset=1.5)


def test_orderdp_subset_of_zero_is_refused():
    with pytest.raises(ValueError, match=r"subset must be a number in \(0, 1\].*got 0"):
        OrderDP(subset=0)


def test_orderdp_keep_as_a_percentage_is_refused():
    with pytest.raises(ValueError, match=r"keep must be a number in \(0, 1\].*got 85"):
        OrderDP(keep=85)


def test_orderdp_negative_or_nan_keep_is_refused():
    for bad in (-0.5, math.nan):
        with pytest.raises(ValueError, match=r"keep must be a number in \(0, 1\]"):
            OrderDP(keep=bad)


def test_orderdp_fraction_given_as_text_or_bool_is_refused():
    with pytest.raises(ValueError, match=r"subset must be a number.*got '0\.75'"):
        OrderDP(subset="0.75")
    with pytest.raises(ValueError, match=r"keep must be a number.*got True"):
        OrderDP(keep=True)


def test_orderdp_subset_and_keep_both_one_is_refused():
    with pytest.raises(ValueError, match=r"subset=1 and keep=1 prune nothing.*lower one of them.*FullData"):
        OrderDP(subset=1.0, keep=1.0)
