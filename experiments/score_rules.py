"""The score rules ``score_validity.py`` measures, each computed through the package's own methods.

A rule is a :class:`~lightning_ted.methods.PruningMethod` fed exactly what :class:`TEDPruningCallback`
feeds it during a full-data run (per-step ``head_values`` and losses into a ``ScoreState``, one
``update`` per epoch), plus how its drop set of a given size is read off the state: the lowest scores
(``lowest``) and, where the method has one, its own selection rule (``own``). Full-data training prunes
nothing, so the ``pruned``/``all`` references are taken over a uniform subsample of the training set at
each epoch start: the reference the pruned set would give if it were random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_ted.core.selection import Selection, epoch_generator, lowest_k_mask
from lightning_ted.core.state import ScoreState
from lightning_ted.methods import EL2N, Forgetting, InfoBatch, PruningMethod, RandomSubset
from lightning_ted.methods.base import HeadStep
from lightning_ted.methods.taylor import HeadCapture
from lightning_ted.research import TEDVariant


def _ted(**kw) -> TEDVariant:
    return TEDVariant(**kw)


#: name -> (method factory, how its drop set is read: "score" lowest, "top" highest, "gated", "infobatch",
#: "random", "importance" (static methods: lowest importance)).
RULES: dict[str, tuple] = {
    "ted": (lambda: _ted(), "score"),  # TED's default: igd, batch reference
    "ted_cross": (lambda: _ted(score="cross"), "score"),
    "ted_ratio": (lambda: _ted(score="ratio"), "score"),
    "ted_cosine": (lambda: _ted(score="cosine"), "score"),
    "ted_grad_norm": (lambda: _ted(score="grad_norm"), "score"),
    "ted_ema": (lambda: _ted(reference="ema"), "score"),
    "ted_pruned": (lambda: _ted(reference="pruned"), "score"),
    "ted_all": (lambda: _ted(reference="all"), "score"),
    "ted_ig": (lambda: _ted(score="ig"), "score"),
    "ted_horizon": (lambda: _ted(score="horizon"), "score"),
    "ted_gated": (lambda: _ted(gate="mean_loss"), "gated"),
    "ted_top": (lambda: _ted(), "top"),  # the highest TED scores: the anchor that should cost most
    "loss": (lambda: InfoBatch(), "score"),  # InfoBatch's state is the last loss
    "infobatch": (lambda: InfoBatch(), "infobatch"),
    "el2n": (lambda: EL2N(score_epochs=10**6), "importance"),  # mean EL2N over every epoch so far
    "forgetting": (lambda: Forgetting(score_epochs=10**6), "importance"),
    "random": (lambda: RandomSubset(), "random"),
    # class-stratified reads: each class's lowest share, so a drop set cannot shift the class prior (early in
    # training the lowest losses gather in the classes the model already favours)
    "ted_by_class": (lambda: _ted(), "score_by_class"),
    "ted_grad_norm_by_class": (lambda: _ted(score="grad_norm"), "score_by_class"),
    "loss_by_class": (lambda: InfoBatch(), "score_by_class"),
}
#: rules whose own selection differs from their lowest set (measured at the middle phase).
OWN_RULES = ("ted", "ted_cross", "ted_ratio", "ted_horizon", "ted_ig", "ted_gated", "ted_pruned", "infobatch")


@dataclass
class Rule:
    name: str
    method: PruningMethod
    read: str
    state: ScoreState
    labels: Tensor | None = None  # the "score_by_class" read ranks inside each label

    @property
    def reads_head(self) -> bool:
        return self.method.head_statistic is not None

    def drop_mask(self, frac: float, generator: torch.Generator) -> Tensor:
        """The ``round(frac N)`` samples this rule ranks lowest (ties and random draws from ``generator``)."""
        st, n = self.state, self.state.num_samples
        k = int(round(frac * n))
        if self.read == "random":
            return lowest_k_mask(torch.rand(n, generator=generator), k)
        score = st.score
        if self.read == "importance":
            score = self.method.importance(st)
        elif self.read == "top":
            score = torch.where(torch.isfinite(score), -score, math.inf)
        elif self.read == "gated":
            score = self.method.gated(st, score)
        elif self.read == "infobatch":  # a uniform draw among the below-mean losses (all of them if fewer)
            mean = score[torch.isfinite(score)].mean()
            score = torch.where(score < mean, torch.rand(n, generator=generator), math.inf)
        jitter = 1e-6 * torch.rand(n, generator=generator)  # random ties (forgetting counts)
        finite = torch.isfinite(score)
        key = torch.where(finite, score.double() + jitter.double() * score.abs().clamp_min(1.0).double(), math.inf)
        if self.read == "score_by_class":
            return lowest_per_class(key, self.labels, frac)
        return lowest_k_mask(key, min(k, int(finite.sum())))

    def own_selection(self, frac: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(kept mask, per-sample weights) of the method's own ``select`` at prune ratio ``frac``."""
        sel = self.method.select(self.state, frac, generator)
        n = self.state.num_samples
        kept = torch.zeros(n, dtype=torch.bool)
        kept[sel.indices] = True
        weights = torch.ones(n)
        weights[sel.indices] = sel.weights
        return kept, weights


def lowest_per_class(key: Tensor, labels: Tensor, frac: float) -> Tensor:
    """Each class's ``round(frac n_c)`` lowest finite keys (vectorized: rank inside the class by a stable sort)."""
    order = key.argsort(stable=True)
    order = order[labels[order].argsort(stable=True)]  # by class, then by key inside it
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
    finite = torch.bincount(labels[torch.isfinite(key)], minlength=counts.numel())
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(key.numel()) - start[labels[order]]
    quota = torch.minimum((frac * counts.double()).round().long(), finite)
    mask = torch.zeros(key.numel(), dtype=torch.bool)
    mask[order[rank < quota[labels[order]]]] = True
    return mask


class ScoreTracker:
    """Every rule's state, fed step by step the way the callback feeds a method."""

    def __init__(
        self, names: list[str], num_samples: int, head: nn.Linear, ref_size: int = 2048, labels: Tensor | None = None
    ) -> None:
        methods = {n: RULES[n][0]() for n in names}
        self.rules = [
            Rule(n, m, RULES[n][1], ScoreState(num_samples, columns=m.columns), labels) for n, m in methods.items()
        ]
        self.capture = HeadCapture(head)
        self.capture.enabled = False
        self.head, self.n, self.ref_size = head, num_samples, ref_size
        # full data prunes nothing; "all" mixes by the share a 30% drop would give
        self.selection = Selection(torch.arange(num_samples - int(0.3 * num_samples)), 0, 1.0, num_samples)

    def start_epoch(self, model: nn.Module, x: tuple[Tensor, ...], y: Tensor, epoch: int, seed: int) -> None:
        """The ``pruned`` reference: mean head gradient over a uniform subsample (forward-only); ``x`` holds
        the model's input tensors."""
        teds = [r.method for r in self.rules if isinstance(r.method, TEDVariant)]
        teds = [m for m in teds if m.references.needs_forward_pass]
        if not teds:
            return
        idx = torch.randperm(self.n, generator=epoch_generator(seed, epoch, stream=3))[: self.ref_size]
        seen = {}
        handle = self.head.register_forward_hook(lambda m, i, o: seen.update(h=i[0], z=o))
        try:
            losses = nn.functional.cross_entropy(model(*(t[idx] for t in x)), y[idx], reduction="none")
            (grad_z,) = torch.autograd.grad(losses.sum(), seen["z"])
        finally:
            handle.remove()
        g_w = grad_z.T @ seen["h"].detach() / idx.numel()
        g_b = grad_z.sum(0) / idx.numel() if self.head.bias is not None else None
        for m in teds:
            m.references.pruned = (epoch, g_w, g_b)

    def observe(self, index: Tensor, losses: Tensor, weights: Tensor, lr: float) -> None:
        """After one step's backward: ``losses`` (B) were weighted by ``weights`` in a batch mean."""
        loss_grad = weights / losses.shape[0]
        for r in self.rules:
            terms = None
            if r.reads_head:
                terms = r.method.head_values(HeadStep(self.capture, loss_grad, weights, lr, self.selection))
            r.state.observe(index, losses.detach(), terms)
        self.capture.reset()

    def end_epoch(self, epoch: int) -> None:
        for r in self.rules:
            r.method.update(r.state, r.state.take_pending(), epoch)
