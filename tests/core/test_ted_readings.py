"""TED's readings (``ted_scores``) against explicit per-sample head gradients, the internal-generalization
update by hand, and what a user who reaches for a research option is told."""

from __future__ import annotations

import pytest
import torch
from conftest import make_trainer, requires_mnist, subset

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback
from lightning_ted.core.state import Observations, ScoreState
from lightning_ted.methods import TED
from lightning_ted.methods.taylor import batch_reference
from lightning_ted.methods.ted_scores import head_score
from lightning_ted.research import TEDVariant


def _explicit_grads(h: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Every sample's head gradient ``(delta_k h_k^T, delta_k)`` flattened (B x (C d + C))."""
    return torch.cat([torch.einsum("bc,bd->bcd", delta, h).flatten(1), delta], dim=1)


@pytest.mark.parametrize("score", ["igd", "cross", "horizon", "ig"])
def test_readings_match_explicit_per_sample_gradients(score):
    torch.manual_seed(0)
    b, c, d, n = 6, 3, 5, 40
    h, delta, w = torch.randn(b, d), torch.randn(b, c), torch.rand(b) + 0.5
    g = _explicit_grads(h, delta)
    gbar = (w[:, None] * g).sum(0) / b  # the weighted batch mean, k's own share included
    own = w * (g * g).sum(1) / b
    expected = {
        "igd": g @ gbar,
        "cross": g @ gbar - own,
        "horizon": g @ gbar - own + (g * g).sum(1) / n,
        "ig": own,  # the own step's first-order decrease of the loss
    }[score]
    grad_w, grad_b = batch_reference(h, delta, w, bias=True)
    assert torch.allclose(head_score(h, delta, w, grad_w, grad_b, score, n), expected, atol=1e-5)


def _obs(index, loss, term) -> Observations:
    return Observations(torch.tensor(index), torch.tensor([loss, term], dtype=torch.float32).T.contiguous())


def test_internal_generalization_is_the_loss_change_the_other_samples_caused():
    method = TEDVariant(score="ig", alpha=0.5)
    state = ScoreState(3, columns=method.columns)
    method.update(state, _obs([0, 1], [2.0, 1.0], [0.5, 0.1]), epoch=0)
    assert torch.isinf(state.score).all()  # one visit: nothing measured yet, never dropped
    method.update(state, _obs([0], [1.0], [0.2]), epoch=1)  # 1.0 - (2.0 - 0.5): the rest improved it by 0.5
    assert state.score[0] == pytest.approx(-0.5) and torch.isinf(state.score[1:]).all()
    method.update(state, _obs([0, 1], [1.3, 1.5], [0.0, 0.0]), epoch=3)  # 0 rose 0.5 from 0.8; 1 rose 0.6 from 0.9
    assert state.score[0] == pytest.approx(0.5 * -0.5 + 0.5 * 0.5, abs=1e-6)
    assert state.score[1] == pytest.approx(0.6)


def test_user_passes_a_research_option_to_ted_and_is_stopped():
    with pytest.raises(TypeError, match="reference"):
        TED(reference="ema")
    with pytest.raises(ValueError, match="TEDVariant"):
        TED(score="cross")
    with pytest.raises(ValueError, match="score must be one of"):
        TED(score="igdd")


def test_user_combines_the_ig_reading_with_the_loss_gate_and_is_stopped():
    with pytest.raises(ValueError, match="use one"):
        TEDVariant(score="ig", gate="mean_loss")


def test_random_ranking_control_keeps_teds_selection_and_weights_on_uniform_candidates():
    """The equal-weight random control: TED's kept count and weights, candidates uniform among the scored."""
    state = ScoreState(2000)
    state.score = torch.arange(2000.0)
    state.score[:100] = float("inf")  # unscored: kept by both
    state.last_epoch[:] = 0
    ted = TED().select(state, prune_ratio=0.2, generator=torch.Generator().manual_seed(0))
    control = TEDVariant(ranking="random").select(state, prune_ratio=0.2, generator=torch.Generator().manual_seed(0))
    assert len(control) == len(ted) and control.mean_weight == pytest.approx(ted.mean_weight)
    assert torch.equal(control.weights.sort().values, ted.weights.sort().values)
    dropped = torch.ones(2000, dtype=torch.bool)
    dropped[control.indices] = False
    assert not dropped[:100].any()  # never an unscored sample
    assert dropped.sum() == 400 and dropped[900:].float().mean() > 0.1  # TED drops only among 100..899
    assert dropped[:900].float().sum() < 400


def test_at_a_ratio_of_q_or_more_every_score_gives_the_same_selection():
    """Every sample is a candidate once ``p >= q``: the drop is uniform, so TED's score cannot matter there
    (why the frontier's 50% target, ratio 0.62 at the default q = 0.5, cannot tell readings apart)."""
    a, b = ScoreState(500), ScoreState(500)
    a.score, b.score = torch.rand(500), -torch.arange(500.0)
    a.last_epoch[:] = b.last_epoch[:] = torch.randint(0, 3, (500,))
    for p, same in ((0.62, True), (0.3, False)):
        sa, sb = (TED().select(st, p, torch.Generator().manual_seed(1)) for st in (a, b))
        assert torch.equal(sa.indices, sb.indices) == same


def test_user_combines_random_ranking_with_score_proportional_sampling_and_is_stopped():
    with pytest.raises(ValueError, match="needs selection='drop'"):
        TEDVariant(ranking="random", selection="pps")


@requires_mnist
@pytest.mark.parametrize("score", ["ig", "horizon"])
def test_research_readings_train_and_score_every_sample(mnist_train, score):
    from lightning_ted.zoo.demo import ImageClassifier

    dm = DynamicPruningDataModule(
        subset(mnist_train, 256), method=TEDVariant(score=score), schedule=RollerCoasterSchedule(0.5), batch_size=64
    )
    make_trainer(4, callbacks=[TEDPruningCallback()]).fit(ImageClassifier(), datamodule=dm)
    assert torch.isfinite(dm.state.score).all()
    assert dm.saved_fraction(3) > 0
