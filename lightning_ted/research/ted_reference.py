"""The reference gradients ``gbar`` of :class:`~lightning_ted.research.TEDVariant`: the batch, an EMA of
it, or the epoch's pruned samples (a forward-only pass at epoch start), held per rank and checkpointed.

Research only: on the frontier and the score-validity benchmark none of them beat the weighted batch that
:class:`~lightning_ted.methods.TED` uses. Everything about them lives here, so the callback stays
method-agnostic.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from lightning_ted.core.collective import Collective
from lightning_ted.core.selection import epoch_generator
from lightning_ted.methods.base import EpochInputs
from lightning_ted.methods.pruned_reference import pruned_indices, pruned_reference
from lightning_ted.methods.taylor import batch_reference

FORWARD_REFERENCES = ("pruned", "all")  # need the per-epoch forward-only pass over pruned samples


class TEDReference:
    """The reference gradients of one rank: the EMA of batch head gradients and the epoch's pruned-set one.

    Args:
        kind: ``"batch"``, ``"ema"``, ``"pruned"`` or ``"all"`` (see :class:`~lightning_ted.research.TEDVariant`).
        ema_decay, reference_size: the EMA's decay and the pruned samples scored per epoch.
    """

    def __init__(self, kind: str, ema_decay: float, reference_size: int) -> None:
        self.kind, self.ema_decay, self.reference_size = kind, ema_decay, reference_size
        self.ema: tuple[Tensor, Tensor | None] | None = None
        self.pruned: tuple[int, Tensor | None, Tensor | None] | None = None  # (epoch, G, gb); G None: none pruned

    @property
    def needs_forward_pass(self) -> bool:
        return self.kind in FORWARD_REFERENCES

    def reset(self) -> None:
        """A new run: no reference of an earlier fit carries over."""
        self.ema, self.pruned = None, None

    def start_epoch(self, trainer: L.Trainer, pl_module: L.LightningModule, inputs: EpochInputs, head: Any) -> None:
        """The pruned-set reference of the epoch (a resumed mid-epoch run keeps the one its checkpoint holds)."""
        epoch = trainer.current_epoch
        if not self.needs_forward_pass or (self.pruned is not None and self.pruned[0] == epoch):
            return
        generator = epoch_generator(inputs.seed, epoch, stream=3)
        indices = pruned_indices(inputs.selection, self.reference_size, generator)
        data = inputs.data
        ref = pruned_reference(trainer, pl_module, head, data.dataset, indices, data.batch_size or 1, data.collate_fn)
        self.pruned = (epoch, *(ref if ref is not None else (None, None)))

    def gradient(
        self, h: Tensor, delta: Tensor, weights: Tensor, bias: bool, pruned_share: float
    ) -> tuple[Tensor, Tensor | None, Tensor, float]:
        """``(G, gb, weights, share)``: the reference head gradient, the sample weights the terms take and
        each sample's own share of the reference (1 for the batch, 0 for the pruned set)."""
        grad_w, grad_b = batch_reference(h, delta, weights, bias=bias)
        share = 1.0  # k's share of the reference, left out by the "cross" and "ratio" scores
        pruned = self.pruned[1:] if self.pruned is not None else (None, None)
        if self.needs_forward_pass and pruned[0] is not None:
            p_w, p_b = (None if t is None else t.to(grad_w.device) for t in pruned)
            if self.kind == "pruned":  # k is not among the pruned samples: no self share
                grad_w, grad_b, share = p_w, p_b, 0.0
            else:  # kept (unweighted batch mean) and pruned means, mixed by their shares of the data
                weights = torch.ones_like(weights)
                a = pruned_share
                k_w, k_b = batch_reference(h, delta, weights, bias=p_b is not None)
                grad_w = (1 - a) * k_w + a * p_w
                grad_b = None if p_b is None else (1 - a) * k_b + a * p_b
                share = 1.0 - a
        elif self.kind == "ema":
            if self.ema is None:
                self.ema = (grad_w, grad_b)
            else:
                d = self.ema_decay
                old_w, old_b = (None if t is None else t.to(grad_w.device) for t in self.ema)
                new_b = None if grad_b is None else d * old_b + (1 - d) * grad_b
                self.ema = (d * old_w + (1 - d) * grad_w, new_b)
            grad_w, grad_b = self.ema
            share = 1.0 - self.ema_decay
        return grad_w, grad_b, weights, share

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self, collective: Collective | None) -> dict[str, Any]:
        """The epoch's pruned-set reference (identical on every rank: all-reduced) and every rank's EMA
        reference (each averages its own batches), stacked by rank. Under DDP every rank writes the checkpoint
        (Lightning calls the datamodule's ``state_dict`` on each), so the EMA is gathered here."""
        out: dict[str, Any] = {}
        if self.pruned is not None:
            epoch, p_w, p_b = self.pruned
            out.update(pruned_ref_epoch=epoch, pruned_grad_w=None if p_w is None else p_w.cpu())
            out.update(pruned_grad_b=None if p_b is None else p_b.cpu())
        if self.ema is None:
            return out
        grad_w, grad_b = self.ema
        if collective is not None and collective.world > 1:
            gather = collective.all_gather
            grad_w, grad_b = gather(grad_w), None if grad_b is None else gather(grad_b)
        else:
            grad_w, grad_b = grad_w.unsqueeze(0), None if grad_b is None else grad_b.unsqueeze(0)
        return {**out, "ema_grad_w": grad_w.cpu(), "ema_grad_b": None if grad_b is None else grad_b.cpu()}

    def load_state_dict(self, state_dict: dict[str, Any], world: int, rank: int) -> None:
        if "pruned_ref_epoch" in state_dict:
            p_w, p_b = state_dict["pruned_grad_w"], state_dict["pruned_grad_b"]
            self.pruned = (int(state_dict["pruned_ref_epoch"]), p_w, p_b)
        if "ema_grad_w" not in state_dict:
            return
        grad_w, grad_b = state_dict["ema_grad_w"], state_dict["ema_grad_b"]
        if grad_w.shape[0] == world:  # same world size: each rank continues its own average
            self.ema = (grad_w[rank], None if grad_b is None else grad_b[rank])
        else:  # another world size: every rank starts from the mean reference
            self.ema = (grad_w.mean(0), None if grad_b is None else grad_b.mean(0))
