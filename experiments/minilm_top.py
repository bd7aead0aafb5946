"""MiniLM fine-tuned above a frozen, cached bottom: the SST-2 task of the frontier at a CPU price.

Fine-tuning all six layers costs about 28 s per 1000 sentences on one core, too slow for a grid of
~100 runs. The bottom ``frozen`` layers (embeddings included) are run once per sentence and their
output states are cached; training fine-tunes the top layers and the classification head on them.
Pruning sees the same per-sample losses and head gradients as with a fully fine-tuned encoder; only the
frozen part is not trained (a standard cheap fine-tuning recipe, stated in the results file).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset


def _layer_mask(states: Tensor, attention_mask: Tensor) -> Tensor:
    """The additive attention mask BERT layers take, ``(batch, 1, 1, tokens)``: 0 where a token is attended,
    the dtype's minimum where it is padding. Built here rather than by a private helper of the encoder (its
    name and arguments change between transformers releases); eager and SDPA attention both add it."""
    keep = attention_mask[:, None, None, :].to(states.dtype)
    return (1.0 - keep) * torch.finfo(states.dtype).min


@torch.no_grad()
def cached_bottom(encoder: nn.Module, data: TensorDataset, frozen: int, batch: int = 256) -> TensorDataset:
    """``(states after layer `frozen`, attention_mask, label)`` for ``(input_ids, attention_mask, label)``."""
    encoder.eval()
    ids, mask, labels = data.tensors
    states = [
        encoder(input_ids=ids[i : i + batch], attention_mask=mask[i : i + batch], output_hidden_states=True)
        .hidden_states[frozen]
        .clone()
        for i in range(0, len(labels), batch)
    ]
    return TensorDataset(torch.cat(states), mask, labels)


class MiniLMTop(nn.Module):
    """The encoder's layers from ``frozen`` on, masked mean pooling, dropout and a linear ``head``."""

    def __init__(self, encoder: nn.Module, frozen: int, num_classes: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(list(encoder.encoder.layer[frozen:])))
        self._encoder = [encoder]  # not a submodule: its frozen part is not trained or saved with this one
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)  # registered last: TED's head

    def forward(self, states: Tensor, attention_mask: Tensor) -> Tensor:
        layer_mask = _layer_mask(states, attention_mask)
        for layer in self.layers:
            out = layer(states, attention_mask=layer_mask)
            states = out[0] if isinstance(out, tuple) else out
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(self.dropout(pooled))
