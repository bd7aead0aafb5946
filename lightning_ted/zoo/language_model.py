"""A small causal LM and its LightningModule: per-sequence losses for pruning, perplexity for evaluation.

``TinyGPT`` is a pre-norm transformer decoder whose last registered layer is the ``lm_head``
(``nn.Linear`` without bias), where TED reads its Taylor terms summed over the sequence's positions.
``CausalLM`` wraps it, or any module mapping ``(B, T)`` token ids to ``(B, T, V)`` logits, such as a
``transformers`` causal LM's ``.logits`` through a small adapter.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import SumMetric

from lightning_ted.adapters.loss import pruned_loss, sequence_loss


class TinyGPT(nn.Module):
    """Token + position embeddings, ``layers`` causal self-attention blocks, and an ``lm_head``."""

    def __init__(self, vocab_size: int, dim: int = 128, layers: int = 2, heads: int = 4, max_len: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_len, dim)
        block = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)  # registered last: find_head picks it

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        x = self.embed(ids) + self.position(torch.arange(t, device=ids.device))
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
        return self.lm_head(self.norm(self.blocks(x, mask=causal, is_causal=True)))


class CausalLM(L.LightningModule):
    """Next-token training with one loss per sequence (mean over its non-padding targets).

    Args:
        net: ``(B, T)`` ids to ``(B, T, V)`` logits; e.g. :class:`TinyGPT`.
        pad_id: the padding token id; its positions are never targets.
        lr, weight_decay: AdamW settings.
    Batches are ``ids`` or a tuple whose first entry is ``ids`` (e.g. SST-2's ``(ids, label)``).
    ``val_ppl``/``test_ppl`` are exp(total token NLL / total target tokens) over the split.
    """

    def __init__(self, net: nn.Module, pad_id: int = 0, lr: float = 3e-3, weight_decay: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.nll = SumMetric()
        self.tokens = SumMetric()

    @staticmethod
    def _ids(batch) -> torch.Tensor:
        return batch[0] if isinstance(batch, (tuple, list)) else batch

    def _targets(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.masked_fill(ids == self.hparams.pad_id, -100)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(ids)

    def per_sample_loss(self, batch) -> torch.Tensor:
        ids = self._ids(batch)
        return sequence_loss(self(ids), self._targets(ids))

    def training_step(self, batch, batch_idx):
        return pruned_loss(self, self.per_sample_loss(batch))

    def _evaluate(self, batch) -> None:
        ids = self._ids(batch)
        logits, targets = self(ids)[:, :-1], self._targets(ids)[:, 1:]
        nll = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        self.nll.update(nll)
        self.tokens.update((targets != -100).sum())

    def validation_step(self, batch, batch_idx) -> None:
        self._evaluate(batch)

    def test_step(self, batch, batch_idx) -> None:
        self._evaluate(batch)

    def _log_perplexity(self, split: str) -> None:
        nll, tokens = self.nll.compute(), self.tokens.compute()
        self.log(f"{split}_ppl", torch.exp(nll / tokens.clamp_min(1)), prog_bar=True)
        self.nll.reset()
        self.tokens.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_perplexity("val")

    def on_test_epoch_end(self) -> None:
        self._log_perplexity("test")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def perplexity(model: CausalLM, ids: torch.Tensor, batch_size: int = 256) -> float:
    """Token-level perplexity of ``model`` on ``ids`` (padding excluded), outside a Trainer."""
    model.eval()
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for chunk in ids.split(batch_size):
            logits, targets = model(chunk)[:, :-1], model._targets(chunk)[:, 1:]
            flat = logits.reshape(-1, logits.shape[-1])
            nll += float(F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="sum"))
            tokens += int((targets != -100).sum())
    return math.exp(nll / max(tokens, 1))
