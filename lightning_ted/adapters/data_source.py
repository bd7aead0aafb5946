"""The contract between ``TEDPruningCallback`` and the datamodule that feeds it, as a base class, so that the
callback checks it without importing the datamodule (which adds the callback to a Trainer that lacks one).
"""

from __future__ import annotations


class PruningDataSource:
    """Base of the datamodules ``TEDPruningCallback`` works with (``DynamicPruningDataModule``).

    Such a datamodule serves each epoch's kept samples with their dataset indices and weights and exposes:
    ``state`` (the :class:`~lightning_ted.core.state.ScoreState`), ``method`` (the pruning method),
    ``batch_context`` (the current batch's indices and weights), ``current_selection`` and
    ``trained_selection``, ``kept_history``, ``begun_epoch``, and the calls ``record_epoch(epoch)``,
    ``fold_finished_epoch()``, ``sync_and_update(epoch)``, ``total_optimizer_steps()`` and ``train_labels()``.
    """
