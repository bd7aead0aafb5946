"""Loading the offline datasets of ``shared/data`` into memory-resident tensor datasets.

Nothing is downloaded: the files must already be on disk (see ``shared/data/README.md``). The whole
split is decoded once into a tensor (float for MNIST-like sets, uint8 for CIFAR-10, whose augmentation
runs on uint8 batches), so per-item access in the training loop is a cheap index.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import TensorDataset

#: (mean, std) of the training pixels, the usual normalisation constants.
_STATS = {"MNIST": (0.1307, 0.3081), "FashionMNIST": (0.2860, 0.3530)}
#: per-channel (RGB) mean and std of the CIFAR-10 training pixels on the 0..1 scale (the published values).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def default_data_root() -> Path:
    """``$LIGHTNING_TED_DATA`` if set, else ``shared/data`` beside the repository."""
    env = os.environ.get("LIGHTNING_TED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def load_image_classification(
    name: str = "MNIST", root: str | Path | None = None, train: bool = True, limit: int | None = None
) -> TensorDataset:
    """``MNIST`` or ``FashionMNIST`` as a ``TensorDataset`` of normalised ``(1, 28, 28)`` images and labels.

    ``limit`` keeps the first ``limit`` samples (for quick tests).
    """
    import torchvision

    if name not in _STATS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_STATS)}")
    root = Path(root) if root is not None else default_data_root()
    cls = getattr(torchvision.datasets, name)
    try:
        ds = cls(root=str(root), train=train, download=False)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{name} not found under {root} (expected {root / name / 'raw'} with the extracted idx files); "
            "pass --data-root / root= pointing at shared/data, or set LIGHTNING_TED_DATA."
        ) from err
    images, labels = ds.data, ds.targets
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    mean, std = _STATS[name]
    x = (images.unsqueeze(1).float() / 255.0 - mean) / std
    return TensorDataset(x, labels.long())


def load_sst2(
    root: str | Path | None = None, split: str = "train", vocab: dict[str, int] | None = None, max_len: int = 56
) -> tuple[TensorDataset, dict[str, int]]:
    """SST-2 sentences (``stsa.binary.{split}``) as ``(token ids, label)`` with a whitespace vocabulary.

    The vocabulary is built from the split when ``vocab`` is None (pass the train vocabulary to encode
    dev/test); id 0 pads, id 1 is unknown. Sentences are cut or padded to ``max_len`` tokens.
    """
    import torch

    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown SST-2 split {split!r}; choose train, dev or test")
    root = Path(root) if root is not None else default_data_root()
    path = root / "SST-2" / f"stsa.binary.{split}"
    if not path.exists():
        raise FileNotFoundError(f"SST-2 not found at {path}; pass root= pointing at shared/data")
    labels, sentences = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            label, text = line.split(" ", 1)
            labels.append(int(label))
            sentences.append(text.lower().split())
    if vocab is None:
        words = sorted({w for s in sentences for w in s})
        vocab = {w: i + 2 for i, w in enumerate(words)}
    ids = torch.zeros((len(sentences), max_len), dtype=torch.int64)
    for row, words in enumerate(sentences):  # one-off decoding at load time, not a training path
        tokens = [vocab.get(w, 1) for w in words[:max_len]]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
    return TensorDataset(ids, torch.tensor(labels, dtype=torch.int64)), vocab


def load_cifar10(root: str | Path | None = None, train: bool = True, exact_only: bool = False) -> TensorDataset:
    """CIFAR-10 (official split) as a ``TensorDataset`` of uint8 ``(3, 32, 32)`` RGB images and int64 labels.

    Reads ``CIFAR-10/cifar10_{train,test}.npz`` (50,000 / 10,000 images, stored in class order; shuffle
    before taking a subset). 121 of the 60,000 images (96 train, 25 test) are not pixel-exact: no
    lossless copy was in reach, so their pixels are a decoded quality-75 JPEG of the same image. They are
    **kept** by default (0.2% of the data; the labels are right, and dropping them would change the
    official split sizes). ``exact_only=True`` drops them, for uses where the original pixels matter.
    """
    import numpy as np
    import torch

    root = Path(root) if root is not None else default_data_root()
    path = root / "CIFAR-10" / f"cifar10_{'train' if train else 'test'}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"CIFAR-10 not found at {path}; pass root= / --data-root pointing at shared/data, or set "
            "LIGHTNING_TED_DATA (the folder must hold CIFAR-10/cifar10_train.npz and cifar10_test.npz)."
        )
    with np.load(path) as npz:
        x, y, lossless = npz["x"], npz["y"], npz["lossless"]
    if exact_only:
        x, y = x[lossless], y[lossless]
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # N x 3 x 32 x 32, uint8
    return TensorDataset(images, torch.from_numpy(y.astype(np.int64)))
