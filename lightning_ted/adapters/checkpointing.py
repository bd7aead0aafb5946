"""Checkpointing of ``DynamicPruningDataModule``: the pruning run's whole state (``core/run.py`` writes and reads
it, including the epoch a checkpoint interrupted or finished without its end hooks) and the wrapped
DataModule's own state.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_ted.adapters.fit_start import epoch_place


class PruningCheckpoint:
    """Mixin of ``DynamicPruningDataModule``: its checkpoint is its :class:`~lightning_ted.core.run.PruningRun`'s
    (written and read there) beside the wrapped DataModule's own state, and a load before ``setup`` waits
    until the dataset size is known."""

    @override
    def state_dict(self) -> dict[str, Any]:
        """The pruning run's state for a checkpoint (see :meth:`PruningRun.state_dict
        <lightning_ted.core.run.PruningRun.state_dict>`): scores, method, history, and the selection and position
        of the epoch it is written in, so a resume with another batch size, schedule or run length finishes the
        epoch exactly as begun. Under DDP, Lightning calls this on every rank while saving; the observations each
        rank buffered since the epoch began are gathered here (one collective) so a mid-epoch checkpoint loses none.
        """
        out = {} if self.state is None else self.run.state_dict(self._collective())
        inner = self.inner.state_dict() if self.inner is not None else None
        if inner:
            out["wrapped"] = inner
        return out

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.inner is not None and "wrapped" in state_dict:
            self.inner.load_state_dict(state_dict["wrapped"])
            state_dict = {k: v for k, v in state_dict.items() if k != "wrapped"}
        if not state_dict:
            return
        if self.state is None:  # restored before setup: apply once the dataset size is known
            self._pending_load = state_dict
            return
        place = epoch_place(self.trainer)
        if not self.run.load_state_dict(state_dict, place.world, place.rank):
            rank_zero_warn(
                "the checkpoint carries no internal-generalization readings (written by an earlier lightning-ted): the "
                "ig/* metrics count from this resume on, once each sample has been trained again."
            )
