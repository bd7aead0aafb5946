"""Checkpointing of ``DynamicPruningDataModule``: the pruning state, the epoch a checkpoint interrupted (its
selection and position) or finished without its end hooks (its observations still to fold in), and the
wrapped DataModule's own state.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

from lightning_ted.core.resume import interrupted_epoch, restore_interrupted


class PruningCheckpoint:
    """Mixin of ``DynamicPruningDataModule`` (its ``state``, ``method``, ``cursor``, selections and history)."""

    def state_dict(self) -> dict[str, Any]:
        """The pruning state for a checkpoint, and the selection of the epoch it was written in with the position
        reached in its order (in samples), so a resume with another batch size, schedule or run length finishes
        the epoch exactly as begun and the changes apply from the next one. Kept after the epoch's last batch
        too: Lightning may resume that epoch without a batch (a checkpoint at a validation end after it) and run
        its end hooks, which must see the epoch's own selection and length, not one drawn again from the scores
        folded in since.

        Under DDP, Lightning calls this on every rank while saving; the observations each rank buffered
        since the epoch began are gathered here (one collective) so a mid-epoch checkpoint loses none.
        """
        if self.state is None:
            return self._wrapped_state({})
        out = {
            "method": self.method.state_dict(),
            "state": self.state.state_dict(all_ranks_pending=self._gather(self.state.local_pending())),
            "seed": self.seed,
            "kept_history": self.kept_history.clone(),
            "begun_epoch": self.begun_epoch,
            "generalization": self.generalization.state_dict(),
        }
        sel, cursor = self.current_selection, self.cursor
        if sel is not None and cursor is not None:
            out["epoch_in_progress"] = interrupted_epoch(sel, cursor)
        if self.state.num_pending and cursor is not None and cursor.position >= len(self.trained_selection or sel):
            out["finished_epoch"] = cursor.epoch  # its observations are pending: its end hooks have not run
        return self._wrapped_state(out)

    def _wrapped_state(self, out: dict[str, Any]) -> dict[str, Any]:
        """``out`` with the wrapped DataModule's own checkpoint state, when it has any."""
        inner = self.inner.state_dict() if self.inner is not None else None
        if inner:
            out["wrapped"] = inner
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.inner is not None and "wrapped" in state_dict:
            self.inner.load_state_dict(state_dict["wrapped"])
            state_dict = {k: v for k, v in state_dict.items() if k != "wrapped"}
        if not state_dict:
            return
        if self.state is None:  # restored before setup: apply once the dataset size is known
            self._pending_load = state_dict
            return
        self.method.load_state_dict(state_dict["method"])
        self.state.load_state_dict(state_dict["state"])
        self.seed = int(state_dict["seed"])
        history = state_dict["kept_history"]
        self.kept_history[: history.numel()] = history[: self.kept_history.numel()]
        self._version += 1
        self.begun_epoch = int(state_dict.get("begun_epoch", -1))
        if "generalization" in state_dict:
            self.generalization.load_state_dict(state_dict["generalization"])
        else:
            rank_zero_warn(
                "the checkpoint carries no internal-generalization readings (written by an earlier lightning-ted): the "
                "ig/* metrics count from this resume on, once each sample has been trained again."
            )
        run = state_dict.get("epoch_in_progress")
        self._interrupted = None if run is None else restore_interrupted(run, self.state.num_samples)
        self._unfolded_epoch = state_dict.get("finished_epoch")
