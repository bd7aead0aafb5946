"""Mid-epoch resume of the train loaders: how far an epoch got (``EpochCursor``), the loader state Lightning
checkpoints (``ResumableEpoch``) and the record of the epoch a checkpoint was written in. (The start of the
epoch after one whose last batch a checkpoint caught needs the Trainer's loops: ``adapters/fit_start.py``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from lightning_ted.core.notices import warn
from lightning_ted.core.selection import Selection


@dataclass
class EpochCursor:
    """How far training got through one epoch's loader: the state a mid-epoch checkpoint must carry."""

    epoch: int
    batches: int = 0  # training batches transferred to the model so far in this epoch (this rank)
    position: int = 0  # positions of the epoch's order trained so far, all ranks together
    resume_at: int | None = None  # position a restored checkpoint stopped at (see PruningDataLoader)
    resume_batches: int = 0  # batches the interrupted run had trained when it stopped there

    def advance(self, batch_size: int, world: int) -> None:
        """Count one training batch of ``batch_size`` samples on each of ``world`` ranks."""
        self.batches += 1
        self.position += batch_size * world


class ResumableEpoch:
    """Mid-epoch resume shared by the train loaders (``PruningDataLoader``, ``DeviceResidentLoader``).

    Lightning saves ``state_dict()`` of a train loader that has one in every checkpoint and hands it to
    ``load_state_dict()`` on resume. The cursor counts what the model received (not what the fetcher
    prefetched). The position in samples comes from the datamodule's checkpoint (``cursor.resume_at``),
    so a resumed run continues with the first sample the interrupted run did not train on, whatever its
    batch size: nothing is repeated or skipped. Without it (an older checkpoint) batches times batch size
    is used. Needs ``cursor``, ``sampler``, ``batch_size`` and ``drop_last`` attributes.
    """

    cursor: EpochCursor
    sampler: Any
    batch_size: int | None
    drop_last: bool

    def _batches(self, samples: int) -> int:
        size = self.batch_size or 1
        return samples // size if self.drop_last else math.ceil(samples / size)

    def __len__(self) -> int:
        """Batches of the epoch as Lightning counts them: after a resume, the interrupted run's trained
        batches plus this run's remaining ones (their size may differ), so Lightning ends the epoch
        neither early nor late."""
        if self.cursor.resume_at is None or not hasattr(self.sampler, "remaining"):
            return self._batches(len(self.sampler))
        return self.cursor.resume_batches + self._batches(self.sampler.remaining())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "batches": self.cursor.batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        batches = checked_batches(state_dict, self.cursor)
        world = getattr(self.sampler, "num_replicas", 1)
        position = self.cursor.resume_at
        if position is None:
            warn_without_record(self.cursor.epoch, batches)
            position = batches * (self.batch_size or 1) * world
        self.cursor.batches, self.cursor.position = batches, position
        if hasattr(self.sampler, "start"):
            self.sampler.start = position


def interrupted_epoch(selection: Selection, cursor: EpochCursor) -> dict[str, Any]:
    """What a mid-epoch checkpoint stores to finish the epoch exactly as begun: its selection (int32 indices
    below 2^31 samples: 4 bytes per kept sample) and the position reached in its order, in samples."""
    small = selection.num_samples <= torch.iinfo(torch.int32).max
    return {
        "epoch": cursor.epoch,
        "position": min(cursor.position, len(selection)),
        "batches": cursor.batches,
        "indices": selection.indices.to(torch.int32 if small else torch.int64),
        "num_unit_weight": selection.num_unit_weight,
        "weight": float(selection.weight),
        "target_ratio": float(selection.target_ratio),
        "per_sample": selection.per_sample,  # Horvitz-Thompson weights of a per-sample selection, else None
    }


def restore_interrupted(saved: dict[str, Any], num_samples: int) -> tuple[EpochCursor, Selection]:
    """The cursor to resume from and the selection, from :func:`interrupted_epoch`'s record."""
    selection = Selection(
        saved["indices"].to(torch.int64),
        int(saved["num_unit_weight"]),
        float(saved["weight"]),
        num_samples,
        float(saved["target_ratio"]),
        saved.get("per_sample"),
    )
    epoch, position = int(saved["epoch"]), int(saved["position"])
    cursor = EpochCursor(
        epoch, int(saved["batches"]), position, resume_at=position, resume_batches=int(saved["batches"])
    )
    return cursor, selection


def warn_without_record(epoch: int, batches: int) -> None:
    """Warn that a checkpoint restores ``batches`` trained batches of ``epoch`` without the datamodule's record
    of that epoch (a checkpoint of an older lightning-ted, or one whose datamodule state was dropped)."""
    if batches:
        warn(
            f"the checkpoint resumes epoch {epoch} after {batches} trained batches but holds no record of the "
            "epoch's selection (DynamicPruningDataModule's 'epoch_in_progress' state, written by lightning-ted "
            "since its mid-epoch resume): the rest of the epoch comes from a selection drawn again from the "
            "restored scores and differs from the interrupted run's. Resume from a checkpoint written at an "
            "epoch's end for an exact continuation.",
            UserWarning,
        )


def checked_batches(state_dict: dict[str, int], cursor: EpochCursor) -> int:
    """The batches a checkpointed train loader had trained, after checking it stopped in ``cursor``'s epoch."""
    epoch = int(state_dict["epoch"])
    if epoch != cursor.epoch:
        raise RuntimeError(
            f"the checkpoint's train loader stopped in epoch {epoch} but Lightning resumes epoch "
            f"{cursor.epoch}; the checkpoint does not match its training progress."
        )
    return int(state_dict["batches"])
