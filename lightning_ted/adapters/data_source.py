"""The contract between ``TEDPruningCallback`` and the datamodule that feeds it, as a typed base class, so that
the callback checks it without importing the datamodule (which adds the callback to a Trainer that lacks one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from lightning_ted.core.batch import BatchContext
    from lightning_ted.core.run import PruningRun
    from lightning_ted.data.spec import TrainData
    from lightning_ted.methods.base import EpochInputs


def run_attribute(name: str) -> property:
    """A datamodule attribute that is the :class:`~lightning_ted.core.run.PruningRun`'s ``name`` (read and set)."""

    def get(self: PruningDataSource) -> Any:
        return getattr(self.__dict__["run"], name)  # not self.run: a wrapper's __getattr__ would mask its absence

    def set_(self: PruningDataSource, value: Any) -> None:
        setattr(self.__dict__["run"], name, value)

    return property(get, set_, doc=f"The pruning run's ``{name}`` (see :class:`~lightning_ted.core.run.PruningRun`).")


class PruningDataSource:
    """Base of the datamodules ``TEDPruningCallback`` works with (``DynamicPruningDataModule``).

    Such a datamodule serves each epoch's kept samples with their dataset indices and weights; it owns one
    :class:`~lightning_ted.core.run.PruningRun` (``run``: the scores, method, schedule, selections and epoch
    bookkeeping, each also readable as an attribute of the datamodule), the current batch's indices and
    weights (``batch_context``) and the calls below, which reach the other ranks through the Trainer.
    """

    run: PruningRun
    batch_context: BatchContext | None
    overfitting: bool

    def train_data(self) -> TrainData:
        raise NotImplementedError

    def record_epoch(self, epoch: int) -> None:
        raise NotImplementedError

    def epoch_inputs(self) -> EpochInputs:
        raise NotImplementedError

    def fold_finished_epoch(self) -> None:
        raise NotImplementedError

    def sync_and_update(self, epoch: int) -> None:
        raise NotImplementedError

    def total_optimizer_steps(self) -> int:
        raise NotImplementedError

    def train_labels(self) -> Tensor | None:
        raise NotImplementedError
