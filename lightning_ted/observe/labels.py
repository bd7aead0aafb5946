"""Class labels of a training set, read without loading its samples (for the kept fraction per class).

Read from a ``targets`` attribute (torchvision), the last tensor of a ``TensorDataset``, a ``label`` or
``labels`` column (Hugging Face ``datasets``), through ``torch.utils.data.Subset`` (what
``random_split`` returns) by indexing the parent's labels, and through ``ConcatDataset`` (the
lightning-hydra-template joins MNIST's train and test sets) when every part has labels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Subset, TensorDataset


def dataset_labels(dataset: Any) -> Tensor | None:
    """One integer label per sample of ``dataset``, or ``None`` when it exposes none cheaply."""
    labels = _raw_labels(dataset)
    if labels is None:
        return None
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        return None
    if labels.dim() != 1 or labels.numel() != len(dataset) or labels.is_floating_point():
        return None
    return labels.long()


def _raw_labels(dataset: Any) -> Any:
    if isinstance(dataset, Subset):
        parent = dataset_labels(dataset.dataset)
        return None if parent is None else parent[torch.as_tensor(dataset.indices, dtype=torch.int64)]
    if isinstance(dataset, ConcatDataset):
        parts = [dataset_labels(part) for part in dataset.datasets]
        return None if not parts or any(p is None for p in parts) else torch.cat(parts)
    labels = getattr(dataset, "targets", None)
    if labels is None and isinstance(dataset, TensorDataset):
        labels = dataset.tensors[-1]
    if labels is None:
        columns = getattr(dataset, "column_names", None)  # a Hugging Face datasets.Dataset
        for name in ("label", "labels"):
            if columns is not None and name in columns:
                labels = dataset[name]
                break
    return labels
