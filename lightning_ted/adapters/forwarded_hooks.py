"""The Lightning hooks ``DynamicPruningDataModule`` forwards to the DataModule it wraps, or serves from its own
evaluation sets: attribute reads, ``prepare_data``, the val/test/predict loaders and ``teardown``. The train
loader is the pruning datamodule's own.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_ted.adapters.compat import overrides
from lightning_ted.data.loader import loader_kwargs


class ForwardedHooks:
    """Mixin of ``DynamicPruningDataModule``: needs ``inner`` (the wrapped DataModule or ``None``),
    ``val_dataset``, ``test_dataset``, ``collate_fn`` and ``_hook_warnings``."""

    def __getattr__(self, name: str) -> Any:
        """Attributes this wrapper does not define read through to the wrapped datamodule (``dm.num_labels``)."""
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(inner, name)

    @override
    def prepare_data(self) -> None:
        if self.inner is not None:
            self.inner.prepare_data()

    @override
    def val_dataloader(self) -> Any:
        if self.inner is not None:  # like plain Lightning: no val_dataloader, no validation
            return self.inner.val_dataloader() if overrides("val_dataloader", self.inner) else []
        return self._eval_loader(self.val_dataset)

    @override
    def test_dataloader(self) -> Any:
        if self.inner is not None:
            return self.inner.test_dataloader()
        return self._eval_loader(self.test_dataset)

    @override
    def predict_dataloader(self) -> Any:
        if overrides("predict_dataloader", self.inner):
            return self.inner.predict_dataloader()
        raise ValueError(
            "DynamicPruningDataModule has no prediction data: pass trainer.predict(model, dataloaders=...), or wrap "
            "a LightningDataModule that defines predict_dataloader()."
        )

    @override
    def teardown(self, stage: str) -> None:
        self._hook_warnings.close()
        if self.inner is not None:
            self.inner.teardown(stage)

    def _eval_loader(self, dataset: Dataset | DataLoader | None) -> DataLoader | list:
        if dataset is None:
            return []
        if isinstance(dataset, DataLoader):  # a ready evaluation loader is used as given
            return dataset
        return DataLoader(dataset, shuffle=False, collate_fn=self.collate_fn, **loader_kwargs(self.train_data()))
