"""Head-gradient Taylor terms ``<g_k, gbar>`` of DESIGN.md section 2, from the real forward/backward.

For a linear head ``z = W h + b`` the per-sample gradient of loss ``l_k`` is ``(delta_k h_k^T, delta_k)``
with ``delta_k = dl_k/dz_k``; for a sequence head it is ``sum_t delta_kt h_kt^T``. Against a reference
gradient ``(G, gb)`` the term is ``sum_t delta_kt^T G h_kt + delta_kt . gb``: no per-sample ``C x d``
tensor is ever built. ``delta_k`` is recovered from the gradient that reached the head output divided
by the gradient that reached the per-sample loss, which cancels sample weights, batch averaging,
gradient accumulation and AMP loss scaling in one step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def find_head(module: nn.Module, name: str | None = None) -> nn.Linear:
    """The output head: the submodule called ``name``, or the last ``nn.Linear`` registered in ``module``."""
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if name is not None:
        try:
            head = module.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"head layer {name!r} not found in {type(module).__name__}; its nn.Linear layers are "
                f"{linears}. Pass head=<one of them> to TEDPruningCallback."
            ) from None
        if not isinstance(head, nn.Linear):
            raise TypeError(
                f"head layer {name!r} is a {type(head).__name__}, but TED's Taylor terms need an nn.Linear "
                f"output layer; the model's nn.Linear layers are {linears}."
            )
        return head
    if not linears:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear layer to take head gradients from; give the model a "
            "linear output layer or pass head='<submodule name>' to TEDPruningCallback."
        )
    return module.get_submodule(linears[-1])


def batch_reference(h: Tensor, delta: Tensor, weights: Tensor, bias: bool = True) -> tuple[Tensor, Tensor | None]:
    """Head gradient of the weighted batch loss ``sum_k w_k l_k / B``: ``(G, gb)`` with G of shape C x d."""
    b = delta.shape[0]
    wd = (delta * (weights / b).reshape((-1,) + (1,) * (delta.dim() - 1))).reshape(-1, delta.shape[-1])
    grad_w = wd.T @ h.reshape(-1, h.shape[-1])  # one (C x BT) @ (BT x d) product
    grad_b = wd.sum(0) if bias else None
    return grad_w, grad_b


def taylor_terms(h: Tensor, delta: Tensor, grad_w: Tensor, grad_b: Tensor | None) -> Tensor:
    """``<g_k, gbar>`` for every sample k: ``sum_t delta_kt^T G h_kt + delta_kt . gb`` (shape B)."""
    projected = h @ grad_w.T  # G h_kt, shape (..., C): never a (..., d) temporary
    if grad_b is not None:
        projected = projected + grad_b
    per_pos = (projected * delta).sum(-1)
    return per_pos.reshape(per_pos.shape[0], -1).sum(1)


def grad_sq_norms(h: Tensor, delta: Tensor, bias: bool = True) -> Tensor:
    """``|g_k|^2`` of every sample's head gradient (shape B), without building it.

    Flat head: ``|delta_k|^2 (|h_k|^2 + 1)``. Sequence head: ``sum_{t,s} (delta_t . delta_s)(h_t . h_s + 1)``
    from two T x T Gram matrices per sample.
    """
    b = delta.shape[0]
    one = 1.0 if bias else 0.0
    if delta.dim() == 2:
        return delta.pow(2).sum(1) * (h.pow(2).sum(1) + one)
    dd = torch.einsum("btc,bsc->bts", delta.reshape(b, -1, delta.shape[-1]), delta.reshape(b, -1, delta.shape[-1]))
    hh = torch.einsum("btd,bsd->bts", h.reshape(b, -1, h.shape[-1]), h.reshape(b, -1, h.shape[-1]))
    return (dd * (hh + one)).sum((1, 2))


def self_terms(h: Tensor, delta: Tensor, weights: Tensor, bias: bool = True) -> Tensor:
    """Each sample's own share of the batch term: ``w_k |g_k|^2 / B`` (shape B).

    Subtracting it from ``taylor_terms`` leaves the cross term ``<g_k, gbar_{-k}>``: how much the rest of
    the batch pulls the same way as sample k, without k's own pull.
    """
    return weights * grad_sq_norms(h, delta, bias) / delta.shape[0]


#: TED score variants over the same head gradients; see :class:`lightning_ted.methods.TED`.
SCORE_VARIANTS = ("igd", "cross", "ratio", "cosine")


def score_values(
    h: Tensor,
    delta: Tensor,
    weights: Tensor,
    grad_w: Tensor,
    grad_b: Tensor | None,
    kind: str,
    self_share: float = 1.0,
) -> Tensor:
    """Per-sample TED score of variant ``kind`` against the reference gradient ``(grad_w, grad_b)``.

    ``igd``: ``<g_k, gbar>``. ``cross``: ``<g_k, gbar> - self_share * w_k |g_k|^2 / B`` (the sample's own
    share of the reference left out). ``ratio``: cross term over ``|g_k|^2``, the share of k's own descent
    that the other samples provide. ``cosine``: ``<g_k, gbar> / (|g_k| |gbar|)``. A sample with a zero
    gradient (fully fit, or weight 0) scores 0 in ``ratio`` and ``cosine``.
    """
    if kind not in SCORE_VARIANTS:
        raise ValueError(f"unknown TED score {kind!r}; choose one of {SCORE_VARIANTS}")
    bias = grad_b is not None
    terms = taylor_terms(h, delta, grad_w, grad_b)
    if kind == "igd":
        return terms
    sq = grad_sq_norms(h, delta, bias)
    if kind == "cosine":
        ref_sq = grad_w.pow(2).sum() + (grad_b.pow(2).sum() if bias else 0.0)
        norm = (sq * ref_sq).sqrt()
        return torch.where(norm > 0, terms / norm.clamp_min(torch.finfo(norm.dtype).tiny), 0.0)
    cross = terms - self_share * weights * sq / delta.shape[0]
    if kind == "cross":
        return cross
    return torch.where(sq > 0, cross / sq.clamp_min(torch.finfo(sq.dtype).tiny), 0.0)


HEAD_STATISTICS = ("taylor", "el2n", "grand", "correct")


def head_statistic(h: Tensor, delta: Tensor, kind: str) -> Tensor:
    """Per-sample statistics of the head for the static peer methods (classification heads, B x C).

    ``el2n``: ``|delta_k|``, the EL2N score (``|softmax - onehot|`` for cross-entropy). ``grand``: the norm
    of the head's per-sample gradient, ``|delta_k| sqrt(|h_k|^2 + 1)`` (weight and bias). ``correct``: 1 if
    the prediction is right, read from a softmax cross-entropy ``delta = p - onehot(y)``, whose only
    negative entry is the label's.
    """
    if delta.dim() != 2:
        raise ValueError(
            f"head statistic {kind!r} needs a classification head with (batch, classes) outputs, got shape "
            f"{tuple(delta.shape)}; use TED or a loss-based method for sequence outputs."
        )
    if kind == "el2n":
        return delta.norm(dim=1)
    if kind == "grand":
        return delta.norm(dim=1) * (h.pow(2).sum(1) + 1.0).sqrt()
    if kind == "correct":
        label = delta.argmin(dim=1, keepdim=True)
        p_label = 1.0 + delta.gather(1, label).squeeze(1)
        p_other = delta.scatter(1, label, float("-inf")).max(dim=1).values
        return (p_label > p_other).float()
    raise ValueError(f"unknown head statistic {kind!r}; choose one of {HEAD_STATISTICS}")


def join_calls(pairs: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """One ``(h, delta)`` for a head that ran once per pair: a single pair as it is, several joined along
    a position axis (``(B, positions, d)``, ``(B, positions, C)``), where the sequence-head algebra sums
    each sample's head gradient over every position of every call."""
    if len(pairs) == 1:
        return pairs[0]
    b = pairs[0][1].shape[0]
    h = torch.cat([h.reshape(b, -1, h.shape[-1]) for h, _ in pairs], dim=1)
    delta = torch.cat([d.reshape(b, -1, d.shape[-1]) for _, d in pairs], dim=1)
    return h, delta


def calls_statistic(pairs: list[tuple[Tensor, Tensor]], kind: str) -> Tensor:
    """:func:`head_statistic` of a step whose head ran once per ``(h, delta)`` pair (shape B).

    One call: the statistic itself. Several (augmented views): ``el2n`` is the mean over the calls,
    ``correct`` needs every call right, and ``grand`` is the norm of the per-sample head gradient, which
    sums over the calls.
    """
    values = [head_statistic(h, delta, kind) for h, delta in pairs]
    if len(values) == 1:
        return values[0]
    if kind == "grand":
        return grad_sq_norms(*join_calls(pairs)).sqrt()
    stacked = torch.stack(values)
    return stacked.amin(0) if kind == "correct" else stacked.mean(0)


class HeadCapture:
    """Forward hook on the head that keeps, for every call in a step, its input ``h`` and output gradient.

    Any forward with autograd on is captured, in train or eval mode (a Hugging Face ``from_pretrained``
    model is in eval mode until ``.train()``). A head called several times in one step (two augmented
    views, R-drop, a second ``self(x)``) gives one ``(h, dL/dz)`` pair per call; a call whose gradient
    never arrives (detached logits, activation-checkpoint recomputation) drops out, and the per-sample
    head gradient is the sum over the calls that remain. ``enabled`` lets the callback limit capture to
    training steps.
    """

    def __init__(self, head: nn.Linear) -> None:
        self.head = head
        self.enabled = True
        self.keep_outputs = False  # also keep each call's output tensor (the callback's one-time checks)
        self.calls: list[_HeadCall] = []
        self._handle = head.register_forward_hook(self._on_forward)

    def _on_forward(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if not (self.enabled and torch.is_grad_enabled() and output.requires_grad):
            return
        call = _HeadCall(inputs[0].detach(), output if self.keep_outputs else None)
        self.calls.append(call)
        output.register_hook(call.on_grad)

    @property
    def h(self) -> Tensor | None:
        """Input of the last captured call."""
        return self.calls[-1].h if self.calls else None

    @property
    def grad_z(self) -> Tensor | None:
        """Output gradient of the last captured call (``None`` until its backward ran)."""
        return self.calls[-1].grad if self.calls else None

    def reset(self) -> None:
        self.calls = []

    def remove(self) -> None:
        self._handle.remove()
        self.reset()

    def call_deltas(self, loss_grad: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``(h, delta)`` in float32 for every call whose gradient arrived, ``delta_k = (dL/dz_k) / (dL/dl_k)``."""
        arrived = [c for c in self.calls if c.grad is not None]
        if not arrived:
            raise RuntimeError(
                "no head gradient was captured this step: the head layer did not take part in the loss's "
                "backward pass (its output was detached, computed under no_grad, or the layer is not the one "
                "producing the logits). Pass TEDPruningCallback(head=...) naming the layer that produces them."
            )
        scale = loss_grad.float()
        # a zero loss gradient (weight 0 or an exactly flat loss) carries no information: delta 0
        scale = scale.masked_fill(scale == 0, float("inf"))
        pairs = []
        for call in arrived:
            grad_z = call.grad.float()
            if grad_z.shape[0] != loss_grad.shape[0]:
                raise ValueError(
                    f"the head output has batch size {grad_z.shape[0]} but the per-sample loss has "
                    f"{loss_grad.shape[0]} entries; the head must map the batch sample-wise (batch first)."
                )
            pairs.append((call.h.float(), grad_z / scale.reshape((-1,) + (1,) * (grad_z.dim() - 1))))
        return pairs

    def per_sample_delta(self, loss_grad: Tensor) -> tuple[Tensor, Tensor]:
        """``(h, delta)`` of the step in float32, every call joined by :func:`join_calls`."""
        return join_calls(self.call_deltas(loss_grad))

    def statistic(self, loss_grad: Tensor, kind: str) -> Tensor:
        """The per-sample head statistic ``kind`` of the step (:func:`calls_statistic` over every call)."""
        return calls_statistic(self.call_deltas(loss_grad), kind)


class _HeadCall:
    """One captured head call: its input, its output gradient once backward delivers it, and (for the
    one-time checks only) its output."""

    __slots__ = ("h", "grad", "output")

    def __init__(self, h: Tensor, output: Tensor | None) -> None:
        self.h, self.grad, self.output = h, None, output

    def on_grad(self, grad: Tensor) -> None:
        # a call whose output is used twice still gets one hook call with the summed gradient
        self.grad = grad.detach()
