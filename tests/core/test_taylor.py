"""Head-gradient Taylor terms against brute-force ``torch.func`` per-sample gradients (DESIGN.md section 2).

The reference for every case is built without the package: per-sample gradients ``g_k`` of ``l_k``
with respect to the head's weight (and bias) from ``vmap(grad(functional_call(...)))``, the reference
``gbar = sum_j w_j g_j / B`` and the term ``<g_k, gbar>`` as a plain dot product of flattened tensors.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lightning_ted.methods.taylor import (
    HeadCapture,
    batch_reference,
    calls_statistic,
    find_head,
    score_values,
    self_terms,
    taylor_terms,
)

IGNORE = -100


def seq_loss(z: Tensor, y: Tensor) -> Tensor:
    """Per-sample loss: mean over the sample's unmasked tokens of token cross entropy.

    ``z`` is ``(..., T, C)``, ``y`` is ``(..., T)`` with ``IGNORE`` on padding. A sample whose tokens are
    all padding gets loss 0 (and gradient 0).
    """
    logp = torch.log_softmax(z, dim=-1)
    mask = y != IGNORE
    nll = -logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def flat_loss(z: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross entropy for ``z`` of shape ``(..., C)``."""
    logp = torch.log_softmax(z, dim=-1)
    return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def brute_force_terms(head: nn.Linear, h: Tensor, y: Tensor, w: Tensor, loss_fn) -> Tensor:
    """``<g_k, gbar>`` from per-sample head gradients, in float64, independent of lightning_ted."""
    params = {n: p.detach().double() for n, p in head.named_parameters()}

    def one(p, hk, yk):
        return loss_fn(functional_call(head, p, (hk,)), yk)

    per_sample = vmap(grad(one), in_dims=(None, 0, 0))(params, h.double(), y)
    g = torch.cat([per_sample[n].reshape(h.shape[0], -1) for n in sorted(per_sample)], dim=1)  # B x P
    gbar = (w.double()[:, None] * g).sum(0) / h.shape[0]
    return g @ gbar


def autograd_delta(head: nn.Linear, h: Tensor, y: Tensor, loss_fn) -> Tensor:
    """``delta_k = dl_k / dz_k`` by autograd (samples are independent, so grad of the sum suffices)."""
    z = head(h).detach().requires_grad_(True)
    (delta,) = torch.autograd.grad(loss_fn(z, y).sum(), z)
    return delta


def _double_head(d: int, c: int, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, c, bias=bias).double()


# ----------------------------------------------------------------------------- pure functions
@pytest.mark.parametrize("bias", [True, False])
def test_linear_head_terms_equal_brute_force(bias):
    b, d, c = 12, 7, 5
    head = _double_head(d, c, bias=bias)
    g = torch.Generator().manual_seed(1)
    h = torch.randn(b, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (b,), generator=g)
    w = torch.randint(1, 3, (b,), generator=g).double()  # weights 1 or 2
    assert {1.0, 2.0} <= set(w.tolist())

    delta = autograd_delta(head, h, y, flat_loss)
    terms = taylor_terms(h, delta, *batch_reference(h, delta, w, bias=bias))
    expected = brute_force_terms(head, h, y, w, flat_loss)
    assert terms.shape == (b,)
    torch.testing.assert_close(terms, expected, rtol=1e-9, atol=1e-12)
    # the terms are not trivially small, and weights matter
    assert expected.abs().max() > 1e-2
    unweighted = brute_force_terms(head, h, y, torch.ones(b), flat_loss)
    assert (unweighted - expected).abs().max() > 1e-3


def test_linear_head_gram_form():
    """For a flat head ``<g_k, g_j> = (delta_k . delta_j)(h_k . h_j + 1)``: the reference is a Gram mean."""
    b, d, c = 9, 4, 3
    head = _double_head(d, c, seed=3)
    g = torch.Generator().manual_seed(4)
    h = torch.randn(b, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (b,), generator=g)
    w = torch.rand(b, generator=g, dtype=torch.float64) + 0.5
    delta = autograd_delta(head, h, y, flat_loss)
    gram = (delta @ delta.T) * (h @ h.T + 1.0)
    expected = gram @ w / b
    torch.testing.assert_close(taylor_terms(h, delta, *batch_reference(h, delta, w)), expected)


@pytest.mark.parametrize("bias", [True, False])
def test_sequence_head_terms_equal_brute_force(bias):
    b, t, d, c = 6, 5, 4, 7
    head = _double_head(d, c, bias=bias, seed=5)
    g = torch.Generator().manual_seed(6)
    h = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (b, t), generator=g)
    lengths = torch.tensor([5, 1, 3, 2, 5, 4])  # every sample keeps at least one token
    y[torch.arange(t)[None, :] >= lengths[:, None]] = IGNORE
    w = torch.tensor([1.0, 2.0, 1.0, 2.0, 2.0, 1.0], dtype=torch.float64)

    delta = autograd_delta(head, h, y, seq_loss)
    assert delta[y == IGNORE].abs().max() == 0  # padding carries no gradient
    terms = taylor_terms(h, delta, *batch_reference(h, delta, w, bias=bias))
    expected = brute_force_terms(head, h, y, w, seq_loss)
    torch.testing.assert_close(terms, expected, rtol=1e-9, atol=1e-12)
    assert expected.abs().max() > 1e-3

    # the per-sample gradient is sum_t delta_kt h_kt^T, not (sum_t delta_kt)(sum_t h_kt)^T
    wrong_h, wrong_delta = h.sum(1), delta.sum(1)
    wrong = taylor_terms(wrong_h, wrong_delta, *batch_reference(wrong_h, wrong_delta, w, bias=bias))
    assert (wrong - expected).abs().max() > 1e-3


# ----------------------------------------------------------------------------- real capture path
class Net(nn.Module):
    """A body (Linear + tanh, sample-wise) and a linear head; works on (B, d_in) or (B, T, d_in)."""

    def __init__(self, d_in: int, d: int, c: int, bias: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, d), nn.Tanh())
        self.head = nn.Linear(d, c, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _captured(model: Net, x: Tensor, y: Tensor, w: Tensor, loss_fn, scale: float):
    """One training-style forward/backward; returns ``(h, delta)`` from the capture and ``dL/dl_k``."""
    capture = HeadCapture(model.head)
    model.train()
    model.zero_grad()
    losses = loss_fn(model(x), y)
    seen: dict[str, Tensor] = {}
    losses.register_hook(lambda grad_: seen.__setitem__("loss_grad", grad_.detach()))
    ((losses * w).mean() * scale).backward()
    h, delta = capture.per_sample_delta(seen["loss_grad"])
    capture.remove()
    return h, delta, seen["loss_grad"]


# scale = 1 / accumulate_grad_batches * AMP loss scale
SCALES = [1.0, 1.0 / 4 * 1024.0, 1.0 / 3 * 65536.0]


@pytest.mark.parametrize("bias", [True, False])
def test_capture_path_flat_head(bias):
    b, d_in, d, c = 16, 6, 8, 5
    torch.manual_seed(10)
    model = Net(d_in, d, c, bias=bias)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(b, d_in, generator=g)
    y = torch.randint(0, c, (b,), generator=g)
    w = torch.randint(1, 3, (b,), generator=g).float()

    h_ref = model.body(x).detach()
    delta_ref = autograd_delta(copy.deepcopy(model.head).double(), h_ref.double(), y, flat_loss)
    expected = brute_force_terms(model.head, h_ref, y, w, flat_loss)
    results = []
    for scale in SCALES:
        h, delta, loss_grad = _captured(model, x, y, w, flat_loss, scale)
        torch.testing.assert_close(loss_grad, w * scale / b)  # the scale did reach the loss gradient
        assert h.dtype == delta.dtype == torch.float32
        torch.testing.assert_close(h, h_ref, rtol=0, atol=0)
        torch.testing.assert_close(delta.double(), delta_ref, rtol=1e-5, atol=1e-6)
        terms = taylor_terms(h, delta, *batch_reference(h, delta, w, bias=bias))
        tol = 1e-5 * float(expected.abs().max())
        torch.testing.assert_close(terms.double(), expected, rtol=1e-5, atol=tol)
        results.append(terms)
    # the scale cancels: every scale gives the same terms
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-5, atol=1e-5 * float(results[0].abs().max()))


@pytest.mark.parametrize("bias", [True, False])
def test_capture_path_sequence_head(bias):
    b, t, d_in, d, c = 5, 6, 3, 8, 11
    torch.manual_seed(20)
    model = Net(d_in, d, c, bias=bias)
    g = torch.Generator().manual_seed(21)
    x = torch.randn(b, t, d_in, generator=g)
    y = torch.randint(0, c, (b, t), generator=g)
    lengths = torch.tensor([6, 1, 4, 2, 5])
    y[torch.arange(t)[None, :] >= lengths[:, None]] = IGNORE
    w = torch.tensor([2.0, 1.0, 1.0, 2.0, 1.0])

    h_ref = model.body(x).detach()
    delta_ref = autograd_delta(copy.deepcopy(model.head).double(), h_ref.double(), y, seq_loss)
    expected = brute_force_terms(model.head, h_ref, y, w, seq_loss)
    assert expected.abs().max() > 1e-3
    for scale in SCALES:
        h, delta, _ = _captured(model, x, y, w, seq_loss, scale)
        assert h.shape == (b, t, d) and delta.shape == (b, t, c)
        torch.testing.assert_close(delta.double(), delta_ref, rtol=1e-5, atol=1e-6)
        assert delta[y == IGNORE].abs().max() == 0
        terms = taylor_terms(h, delta, *batch_reference(h, delta, w, bias=bias))
        torch.testing.assert_close(terms.double(), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_capture_path_fully_padded_sample_scores_zero():
    """A sample with no real token has loss 0 and g_k = 0, so its term is 0 and it adds nothing to gbar."""
    b, t, d_in, d, c = 4, 3, 3, 5, 4
    torch.manual_seed(30)
    model = Net(d_in, d, c)
    g = torch.Generator().manual_seed(31)
    x = torch.randn(b, t, d_in, generator=g)
    y = torch.randint(0, c, (b, t), generator=g)
    y[2] = IGNORE
    w = torch.ones(b)
    h, delta, _ = _captured(model, x, y, w, seq_loss, scale=256.0)
    assert torch.isfinite(delta).all()
    terms = taylor_terms(h, delta, *batch_reference(h, delta, w))
    expected = brute_force_terms(model.head, model.body(x).detach(), y, w, seq_loss)
    assert expected[2] == 0
    torch.testing.assert_close(terms.double(), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_capture_has_nothing_until_a_gradient_reaches_the_head():
    model = Net(3, 4, 2)
    capture = HeadCapture(model.head)
    x = torch.randn(5, 3)
    model.eval()
    model(x)
    with pytest.raises(RuntimeError, match="no head gradient"):
        capture.per_sample_delta(torch.ones(5))
    model.train()
    with torch.no_grad():
        model(x)
    with pytest.raises(RuntimeError, match="no head gradient"):
        capture.per_sample_delta(torch.ones(5))
    # a training forward without backward has h but no gradient yet
    model(x)
    assert capture.h is not None and capture.grad_z is None
    with pytest.raises(RuntimeError):
        capture.per_sample_delta(torch.ones(5))
    capture.remove()
    model(x).sum().backward()
    assert capture.h is None and capture.grad_z is None  # removed: no longer captures


def test_head_called_twice_sums_its_per_sample_gradient_over_the_calls():
    """Two calls with different inputs (two views), one without a gradient (detached), in eval mode: the
    terms and GraNd norms equal brute force over ``g_k = grad of l_k(view 1, view 2)``."""
    b, d_in, d, c = 8, 3, 5, 4
    torch.manual_seed(40)
    model = Net(d_in, d, c)
    g = torch.Generator().manual_seed(41)
    x1, x2 = torch.randn(b, d_in, generator=g), torch.randn(b, d_in, generator=g)
    y = torch.randint(0, c, (b,), generator=g)
    w = torch.randint(1, 3, (b,), generator=g).float()
    capture = HeadCapture(model.head)
    model.eval()  # captured in eval mode too
    losses = flat_loss(model(x1), y) + 0.5 * flat_loss(model(x2), y)
    model(x1).detach()  # its gradient never arrives: no contribution
    seen: dict[str, Tensor] = {}
    losses.register_hook(lambda grad_: seen.__setitem__("loss_grad", grad_.detach()))
    ((losses * w).mean() * 64.0).backward()
    assert len(capture.calls) == 3 and len(capture.call_deltas(seen["loss_grad"])) == 2
    h, delta = capture.per_sample_delta(seen["loss_grad"])
    grand = calls_statistic(capture.call_deltas(seen["loss_grad"]), "grand")
    capture.remove()

    h1, h2 = model.body(x1).detach().double(), model.body(x2).detach().double()
    head = copy.deepcopy(model.head).double()
    params = {n: p.detach() for n, p in head.named_parameters()}

    def loss_k(p, a, b_, yk):
        return flat_loss(functional_call(head, p, (a,)), yk) + 0.5 * flat_loss(functional_call(head, p, (b_,)), yk)

    per_sample = vmap(grad(loss_k), in_dims=(None, 0, 0, 0))(params, h1, h2, y)
    gk = torch.cat([per_sample[n].reshape(b, -1) for n in sorted(per_sample)], dim=1)
    expected = gk @ ((w.double()[:, None] * gk).sum(0) / b)
    terms = taylor_terms(h, delta, *batch_reference(h, delta, w))
    torch.testing.assert_close(terms.double(), expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    torch.testing.assert_close(grand.double(), gk.norm(dim=1), rtol=1e-4, atol=1e-6)


def test_capture_rejects_batch_size_mismatch():
    model = Net(3, 4, 2)
    capture = HeadCapture(model.head)
    model(torch.randn(5, 3)).sum().backward()
    with pytest.raises(ValueError, match="batch size 5"):
        capture.per_sample_delta(torch.ones(4))


# ----------------------------------------------------------------------------- find_head
class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.norm = nn.LayerNorm(8)
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(8, 3))


def test_find_head_defaults_to_last_linear():
    model = Nested()
    assert find_head(model) is model.classifier[1]
    assert find_head(model, "encoder.2") is model.encoder[2]
    assert find_head(model, "classifier.1") is model.classifier[1]


def test_find_head_unknown_name_lists_linears():
    with pytest.raises(ValueError, match="decoder") as info:
        find_head(Nested(), "decoder")
    msg = str(info.value)
    for name in ("encoder.0", "encoder.2", "classifier.1"):
        assert name in msg


def test_find_head_non_linear_is_type_error():
    with pytest.raises(TypeError, match="LayerNorm"):
        find_head(Nested(), "norm")


def test_find_head_without_linear():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(ValueError, match="no nn.Linear"):
        find_head(model)


@pytest.mark.parametrize("sequence", [False, True])
def test_self_terms_leave_the_cross_term(sequence):
    """``taylor_terms - self_terms`` equals ``<g_k, gbar_{-k}>`` with k's own gradient left out of gbar."""
    b, t, d, c = 6, 4, 5, 3
    head = _double_head(d, c)
    g = torch.Generator().manual_seed(3)
    shape = (b, t, d) if sequence else (b, d)
    h = torch.randn(*shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, shape[:-1], generator=g)
    w = torch.rand(b, generator=g, dtype=torch.float64) + 0.5
    loss_fn = seq_loss if sequence else flat_loss
    delta = autograd_delta(head, h, y, loss_fn)
    cross = taylor_terms(h, delta, *batch_reference(h, delta, w)) - self_terms(h, delta, w)

    params = {n: p.detach() for n, p in head.named_parameters()}
    per_sample = vmap(grad(lambda p, hk, yk: loss_fn(functional_call(head, p, (hk,)), yk)), in_dims=(None, 0, 0))(
        params, h, y
    )
    gk = torch.cat([per_sample[n].reshape(b, -1) for n in sorted(per_sample)], dim=1)
    expected = torch.stack([gk[k] @ ((w[:, None] * gk).sum(0) - w[k] * gk[k]) / b for k in range(b)])
    torch.testing.assert_close(cross, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sequence", [False, True])
@pytest.mark.parametrize("kind", ["igd", "cross", "ratio", "cosine"])
def test_score_variants_equal_brute_force(kind, sequence):
    """Every TED score variant equals its definition over explicit per-sample gradients (float64)."""
    b, t, d, c = 7, 3, 5, 4
    head = _double_head(d, c, seed=1)
    g = torch.Generator().manual_seed(11)
    shape = (b, t, d) if sequence else (b, d)
    h = torch.randn(*shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, shape[:-1], generator=g)
    w = torch.rand(b, generator=g, dtype=torch.float64) + 0.5
    loss_fn = seq_loss if sequence else flat_loss
    delta = autograd_delta(head, h, y, loss_fn)
    got = score_values(h, delta, w, *batch_reference(h, delta, w), kind)

    params = {n: p.detach() for n, p in head.named_parameters()}
    per_sample = vmap(grad(lambda p, hk, yk: loss_fn(functional_call(head, p, (hk,)), yk)), in_dims=(None, 0, 0))(
        params, h, y
    )
    gk = torch.cat([per_sample[n].reshape(b, -1) for n in sorted(per_sample)], dim=1)  # B x P
    gbar = (w[:, None] * gk).sum(0) / b
    expected = []
    for k in range(b):  # the definitions, one sample at a time
        others = gbar - w[k] * gk[k] / b
        if kind == "igd":
            expected.append(gk[k] @ gbar)
        elif kind == "cross":
            expected.append(gk[k] @ others)
        elif kind == "ratio":
            expected.append(gk[k] @ others / (gk[k] @ gk[k]))
        else:
            expected.append(gk[k] @ gbar / (gk[k].norm() * gbar.norm()))
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-9, atol=1e-12)


def test_ratio_and_cosine_score_a_zero_gradient_as_zero():
    """A sample with a zero head gradient (weight 0 or fully fit) scores 0, not NaN."""
    h = torch.randn(4, 3, dtype=torch.float64)
    delta = torch.randn(4, 2, dtype=torch.float64)
    delta[1] = 0.0
    w = torch.ones(4, dtype=torch.float64)
    for kind in ("ratio", "cosine"):
        values = score_values(h, delta, w, *batch_reference(h, delta, w), kind)
        assert torch.isfinite(values).all() and values[1] == 0.0


def test_unknown_score_variant_is_named():
    """A misspelt variant lists the valid ones."""
    h, delta, w = torch.randn(2, 3), torch.randn(2, 2), torch.ones(2)
    with pytest.raises(ValueError, match="igd"):
        score_values(h, delta, w, *batch_reference(h, delta, w), "cosin")
