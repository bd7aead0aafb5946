"""Issue 29: the run plan's kept counts while some samples are unscored, checked against the selection itself.

TED never drops an unscored sample, so with ``S`` of ``N`` samples scored it keeps more than its schedule
says; :meth:`TED.kept_range` bounds that count and the run plan sums the bounds. Here every bound is checked
against ``TED.select`` on score states with ``S`` scored samples (stale ones included once the staleness rule
can apply), over ratios, ``q``, ``max_weight`` and scored counts.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from lightning_ted import TED
from lightning_ted.core.selection import epoch_generator
from lightning_ted.core.state import ScoreState
from lightning_ted.methods import METHODS
from lightning_ted.methods.base import TrainedBefore
from lightning_ted.research import TEDVariant

N = 200


def _state(scored: int, epoch: int, seed: int) -> ScoreState:
    """``scored`` random samples scored (random finite scores), last seen at random epochs before ``epoch``."""
    gen = torch.Generator().manual_seed(seed)
    state = ScoreState(N)
    idx = torch.randperm(N, generator=gen)[:scored]
    state.score[idx] = torch.randn(scored, generator=gen)
    state.seen[idx] = 1
    state.last_epoch[idx] = torch.randint(0, max(1, epoch), (scored,), generator=gen, dtype=torch.int32)
    if scored:
        state.last_epoch[idx[0]] = epoch - 1  # the last epoch observed something
    return state


@pytest.mark.parametrize(
    "q,max_staleness,max_weight",
    [(0.5, 4, 10.0), (1.0, 4, 10.0), (0.5, None, 10.0), (1.0, None, math.inf), (0.3, 2, 4.0)],
)
def test_ted_kept_count_with_unscored_samples_lies_in_its_range(q, max_staleness, max_weight):
    """For every scored count and ratio, ``len(select)`` lies in ``kept_range``; where no sample can be stale
    yet (``epoch < max_staleness``) the range is one number and it is the count."""
    method = TED(q=q, max_staleness=max_staleness, max_weight=max_weight)
    epochs = [1, 3] + ([max_staleness, max_staleness + 3] if max_staleness else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for scored, ratio, epoch in itertools.product([0, 1, 30, 90, 150, 199, N], [0.1, 0.45, 0.8, 0.95], epochs):
            fewest, most = method.kept_range(N, ratio, epoch, TrainedBefore(scored, scored))
            for seed in range(3):
                kept = len(method.select(_state(scored, epoch, seed), ratio, epoch_generator(seed, epoch)))
                assert fewest <= kept <= most, (scored, ratio, epoch, seed)
                if max_staleness is None or epoch < max_staleness:
                    assert fewest == kept == most, (scored, ratio, epoch, seed)
            if scored == N:
                assert fewest == most == method.expected_kept(N, ratio, epoch)
            if scored == 0:
                assert fewest == most == N


def test_kept_range_widens_with_the_scored_range_and_other_methods_ignore_it():
    """A range of scored counts gives the union of their ranges; a method whose count ignores scores (every
    other exact one) gives its expected count whatever was trained."""
    method = TED()
    low, high = (
        method.kept_range(N, 0.8, 2, TrainedBefore(60, 60)),
        method.kept_range(N, 0.8, 2, TrainedBefore(120, 120)),
    )
    assert method.kept_range(N, 0.8, 2, TrainedBefore(60, 120)) == (high[0], low[1])
    for cls in METHODS.values():
        if cls.exact_kept_count and not cls.keeps_unscored:
            m = cls()
            m.bind(5)
            assert m.kept_range(N, 0.4, 2, TrainedBefore(0, 10, False)) == (m.expected_kept(N, 0.4, 2),) * 2


def test_research_readings_count_everything_kept_until_scored():
    """``TEDVariant(score="ig")`` scores at the second visit: epochs 0 and 1 keep everything, later ones are
    exact only when no earlier epoch was cut; "pps" is exact once every sample was trained."""
    ig, pps = TEDVariant(score="ig"), TEDVariant(selection="pps")
    assert ig.kept_range(N, 0.5, 1, TrainedBefore(N, N)) == (N, N)
    kept = ig.expected_kept(N, 0.5, 2)
    assert ig.kept_range(N, 0.5, 2, TrainedBefore(N, N)) == (kept, kept)
    assert ig.kept_range(N, 0.5, 2, TrainedBefore(N, N, whole=False)) == (kept, N)
    assert pps.kept_range(N, 0.5, 0, TrainedBefore(0, 0)) == (N, N)
    assert pps.kept_range(N, 0.5, 2, TrainedBefore(150, N)) == (pps.expected_kept(N, 0.5, 2), N)
