"""Reference gradient over the pruned samples, from a forward-only re-scoring pass (as KAKURENBO does).

TED asks how much fitting a kept sample helps the samples that are *not* trained this epoch. Their head
gradient is never seen during the epoch, so once per epoch a subsample of the pruned set goes through the
model (eval mode, no parameter gradients): ``delta_j = dl_j/dz_j`` comes from a backward pass that stops
at the head output, and the mean head gradient ``(G, gb) = mean_j (delta_j h_j^T, delta_j)`` is the
reference the epoch's Taylor terms are taken against. The per-sample loss comes from the module's
``per_sample_loss(batch)`` method, since ``training_step`` may log or step.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, default_collate

from lightning_ted.core.selection import Selection

LOSS_METHOD = "per_sample_loss"


def require_loss_method(pl_module: L.LightningModule, reference: str) -> None:
    """Fail at setup, not mid-run, when the module cannot give losses for the re-scoring pass."""
    if not callable(getattr(pl_module, LOSS_METHOD, None)):
        raise AttributeError(
            f"TEDVariant(reference={reference!r}) re-scores pruned samples with a forward-only pass and needs "
            f"{type(pl_module).__name__}.{LOSS_METHOD}(self, batch) returning one loss per sample "
            "(reduction='none'); define it (training_step can then call it too) or use reference='batch'."
        )


def pruned_indices(selection: Selection, size: int, generator: torch.Generator) -> Tensor:
    """Up to ``size`` indices of samples the selection leaves out (all of them when they are fewer).

    A subsample is drawn uniformly with replacement by rejection against a kept mask (1 byte per
    sample, transient), so no index list of the whole pruned set is built at scale.
    """
    n = selection.num_samples
    num_pruned = n - len(selection)
    if num_pruned <= 0 or size <= 0:
        return torch.zeros(0, dtype=torch.int64)
    kept = torch.zeros(n, dtype=torch.bool)
    kept[selection.indices] = True
    if num_pruned <= size:
        return torch.nonzero(~kept).squeeze(1)
    found = torch.zeros(0, dtype=torch.int64)
    while found.numel() < size:  # expected one round: twice the draws needed on average
        draws = torch.randint(n, (math.ceil(2 * size * n / num_pruned) + 16,), generator=generator)
        found = torch.cat([found, draws[~kept[draws]]])
    return found[:size]


def _batches(dataset: Dataset, indices: Tensor, batch_size: int, collate_fn: Any):
    if indices.numel() == 0:  # (an empty tensor still splits into one empty chunk)
        return
    if isinstance(dataset, TensorDataset) and collate_fn in (None, default_collate):
        for chunk in indices.split(batch_size):
            yield [t[chunk] for t in dataset.tensors]
        return
    if isinstance(dataset, IterableDataset) and type(dataset).__getitem__ is Dataset.__getitem__:
        raise TypeError(
            f"the re-scoring pass reads pruned samples by index, but {type(dataset).__name__} is an iterable "
            "dataset without random access; use TED (its reference is the batch), TEDVariant(reference='batch') or "
            "'ema', or litdata's StreamingDataset "
            "(which reads samples by index too)."
        )
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    yield from DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn or default_collate)


def pruned_reference(
    trainer: L.Trainer,
    pl_module: L.LightningModule,
    head: nn.Linear,
    dataset: Dataset,
    indices: Tensor,
    batch_size: int,
    collate_fn: Any = None,
) -> tuple[Tensor, Tensor | None] | None:
    """Mean head gradient ``(G, gb)`` of the samples ``indices`` over all ranks, or ``None`` if none.

    Each rank scores ``indices[rank::world]``; one all-reduce sums the gradients and counts, so every
    rank holds the same reference. The module runs in eval mode under the trainer's precision context.
    """
    world, rank = trainer.world_size, trainer.global_rank
    mine = indices[rank::world]
    bias = head.bias is not None
    c, d = head.out_features, head.in_features
    device = head.weight.device
    total = torch.zeros(c * d + c + 1, dtype=torch.float32, device=device)  # [G | gb | count]
    seen: dict[str, Tensor] = {}

    def keep_head_io(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        seen["h"], seen["z"] = inputs[0], output

    was_training = pl_module.training
    handle = head.register_forward_hook(keep_head_io)
    pl_module.eval()
    try:
        for data in _batches(dataset, mine, batch_size, collate_fn):
            batch = trainer.strategy.batch_to_device(data)
            with torch.enable_grad(), trainer.precision_plugin.forward_context():
                losses = getattr(pl_module, LOSS_METHOD)(batch)
            if "z" not in seen or not seen["z"].requires_grad:
                raise RuntimeError(
                    f"{type(pl_module).__name__}.{LOSS_METHOD}(batch) did not run the head layer with autograd "
                    "on; the re-scoring pass needs the head output in the loss's graph."
                )
            if losses.dim() != 1 or losses.shape[0] != seen["z"].shape[0]:
                raise ValueError(
                    f"{LOSS_METHOD}(batch) returned shape {tuple(losses.shape)} for a batch of "
                    f"{seen['z'].shape[0]}; return one loss per sample (reduction='none')."
                )
            (grad_z,) = torch.autograd.grad(losses.float().sum(), seen["z"])  # stops at the head output
            delta = grad_z.detach().float().reshape(-1, c)
            h = seen["h"].detach().float().reshape(-1, d)
            total[: c * d] += (delta.T @ h).reshape(-1)
            total[c * d : c * d + c] += delta.sum(0)
            total[-1] += grad_z.shape[0]
            seen.clear()
    finally:
        handle.remove()
        pl_module.train(was_training)
    if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        total = trainer.strategy.reduce(total, reduce_op="sum")
    count = float(total[-1])
    if count == 0:
        return None
    grad_w = (total[: c * d] / count).reshape(c, d)
    grad_b = total[c * d : c * d + c] / count if bias else None
    return grad_w, grad_b
