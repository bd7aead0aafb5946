"""Class labels read through Subset, TensorDataset, ``targets`` and a Hugging Face style label column."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset, TensorDataset, random_split

from lightning_ted.observe.labels import dataset_labels


class WithTargets(Dataset):
    def __init__(self, targets) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return torch.zeros(2), self.targets[i]


class ColumnDataset(Dataset):
    """The part of a Hugging Face ``datasets.Dataset`` the reader uses: ``column_names`` and ``ds[column]``."""

    def __init__(self, labels: list[int], column: str) -> None:
        self.column_names = ["text", column]
        self._columns = {"text": ["x"] * len(labels), column: labels}

    def __len__(self) -> int:
        return len(self._columns["text"])

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._columns[key]
        return {name: values[key] for name, values in self._columns.items()}


def test_labels_from_targets_and_tensor_dataset():
    assert torch.equal(dataset_labels(WithTargets([2, 0, 1])), torch.tensor([2, 0, 1]))
    ds = TensorDataset(torch.randn(4, 3), torch.tensor([1, 1, 0, 2]))
    assert torch.equal(dataset_labels(ds), torch.tensor([1, 1, 0, 2]))


def test_user_wraps_a_random_split_subset():
    base = TensorDataset(torch.randn(10, 3), torch.arange(10) % 3)
    part, _ = random_split(base, [6, 4], generator=torch.Generator().manual_seed(0))
    assert isinstance(part, Subset)
    expected = torch.stack([base[i][1] for i in part.indices])
    assert torch.equal(dataset_labels(part), expected)
    nested = Subset(part, [5, 0])
    assert torch.equal(dataset_labels(nested), expected[[5, 0]])


def test_user_passes_a_hugging_face_style_dataset():
    assert torch.equal(dataset_labels(ColumnDataset([0, 1, 1], "label")), torch.tensor([0, 1, 1]))
    assert torch.equal(dataset_labels(ColumnDataset([3, 2], "labels")), torch.tensor([3, 2]))


def test_no_labels_when_none_are_exposed():
    assert dataset_labels(TensorDataset(torch.randn(3, 2))) is None  # float last tensor: no class labels
    assert dataset_labels(WithTargets([[1, 2], [3, 4]])) is None  # not one label per sample


def test_labels_through_a_subset_of_a_concat_dataset():
    """The lightning-hydra-template joins MNIST's train and test sets and splits them: a ``Subset`` of a
    ``ConcatDataset``; its labels are the parts' labels, joined, at the subset's indices. A part without
    labels leaves the whole without."""
    from torch.utils.data import ConcatDataset

    joined = ConcatDataset([WithTargets([0, 1, 2]), TensorDataset(torch.randn(2, 3), torch.tensor([3, 4]))])
    part = Subset(joined, [4, 0, 3])
    assert torch.equal(dataset_labels(part), torch.tensor([4, 0, 3]))
    assert dataset_labels(ConcatDataset([WithTargets([0, 1]), Subset(list(range(5)), [0, 1])])) is None
