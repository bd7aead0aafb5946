"""Per-sequence losses for language models: one loss per sample from token losses (DESIGN.md section 2).

TED and every peer method score samples, so a causal LM has to give one loss per sequence. It is the
mean token loss over that sequence's non-padding targets: long and short sequences count alike, and the
LM head's per-sample gradient is the sum over the sequence's positions, which the Taylor algebra in
:mod:`lightning_ted.taylor` computes without a per-sample ``V x d`` gradient.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def sequence_loss(logits: Tensor, targets: Tensor, ignore_index: int = -100, shift: bool = True) -> Tensor:
    """Mean cross-entropy over each sequence's targets that are not ``ignore_index`` (shape ``(B,)``).

    ``logits``: ``(B, T, V)``; ``targets``: ``(B, T)`` token ids with ``ignore_index`` at padding.
    ``shift=True`` is the causal-LM convention (position t predicts token t + 1). A sequence with no
    target token (all padding, or a single token when shifting) has loss 0 and no gradient, instead of
    the 0/0 that would turn the batch loss into NaN.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"sequence_loss needs logits (batch, time, vocab) and targets (batch, time); got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if shift:
        logits, targets = logits[:, :-1], targets[:, 1:]
    b, t, v = logits.shape
    token = F.cross_entropy(
        logits.reshape(b * t, v), targets.reshape(b * t), ignore_index=ignore_index, reduction="none"
    )
    mask = (targets != ignore_index).to(token.dtype)
    counts = mask.sum(1)
    return (token.reshape(b, t) * mask).sum(1) / counts.clamp_min(1.0)
