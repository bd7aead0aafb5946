"""The main-process side of a streamed epoch: batches in the stream's order, ranks evened out, resumable.

``StreamedEpochLoader`` wraps one epoch's ``DataLoader`` over :class:`~lightning_ted.streaming.stream.PrunedStream`.
For a litdata source the kept count of every rank and worker is planned before the epoch, so the loader
knows its exact length and, under DDP, adds zero-weight batches (index -1: never scored, no gradient) to a
rank whose share of the kept samples makes fewer batches, so every rank runs the same number of steps.
The workers' full batches come first, then their remainders batched together (``ceil(kept / batch_size)``
batches per rank). At the end of the stream it checks that this rank served its planned kept samples,
each exactly once.

Mid-epoch resume: the checkpoint holds the epoch's selection and the batches trained (the datamodule's
``epoch_in_progress``). The resumed loader streams the epoch again in the same order and skips those
batches before they reach the model: nothing is trained twice or missed, and the order after the resume is
the uninterrupted run's. The skipped part is read and collated again, never trained (a resume repeats
I/O, not model compute).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from lightning_ted.core.batch import IndexedSample
from lightning_ted.core.resume import EpochCursor, checked_batches, warn_without_record
from lightning_ted.core.selection import Selection, epoch_generator
from lightning_ted.data.loader import loader_kwargs
from lightning_ted.data.spec import EpochPlace, TrainData
from lightning_ted.streaming.stream import PrunedStream, Remainder, collate_kept, dense_weights, unbatched


@dataclass
class StreamCursor(EpochCursor):
    """An ``EpochCursor`` whose position says only whether the epoch is done (``kept`` once the rank ran its
    ``total`` batches, else 0): stream positions are not comparable across ranks, the batch count is."""

    total: int = 0  # batches each rank runs this epoch
    kept: int = 0
    capacity: int = 0  # observation rows a rank can produce this epoch (pads included)

    def advance(self, batch_size: int, world: int) -> None:
        self.batches += 1
        if self.batches >= self.total:
            self.position = self.kept


class StreamedEpochLoader:
    """One epoch of the streamed path's training batches (``IndexedSample``), see the module docstring."""

    def __init__(
        self,
        data: TrainData,
        selection: Selection,
        cursor: StreamCursor,
        epoch_stream: Any,
        plan: np.ndarray | None,
        rank: int,
    ) -> None:
        self.data, self.selection, self.cursor, self.rank = data, selection, cursor, rank
        self.epoch_stream, self.plan = epoch_stream, plan
        self.weights = dense_weights(selection)
        self.batch_size = data.batch_size or 1
        self.workers = data.num_workers or 0
        self.world = plan.shape[0] if plan is not None else 1
        # one process: every kept sample is this rank's
        self.rank_kept = int(plan[rank].sum()) if plan is not None else len(selection)
        self.rank_batches = math.ceil(self.rank_kept / self.batch_size)
        self.collate = data.collate_fn or default_collate

    def __len__(self) -> int:
        return self.cursor.total

    def _batches(self) -> Iterator[IndexedSample]:
        """The workers' full batches as they come, then their remainders batched together."""
        kwargs = loader_kwargs(self.data)
        kwargs.update(batch_size=None, persistent_workers=False)  # the stream batches; a new loader per epoch
        loader = DataLoader(
            PrunedStream(self.epoch_stream, self.weights, self.batch_size, self.collate),
            collate_fn=unbatched,
            generator=epoch_generator(self.data.seed, self.cursor.epoch, stream=2),  # worker seeds
            **kwargs,
        )
        rest = Remainder([], [], [])
        for out in loader:
            if isinstance(out, Remainder):
                rest.items += out.items
                rest.index += out.index
                rest.weight += out.weight
            else:
                yield out
        size = self.batch_size
        for start in range(0, len(rest.items), size):
            part = slice(start, start + size)
            yield collate_kept(self.collate, rest.items[part], rest.index[part], rest.weight[part])

    def __iter__(self) -> Iterator[IndexedSample]:
        cursor = self.cursor
        skip = cursor.resume_batches if cursor.resume_at is not None else 0
        seen = torch.zeros(self.selection.num_samples, dtype=torch.bool)
        served = produced = 0
        last = None
        for batch in self._batches():
            index = batch.index
            twice = repeated_id(index, seen)
            if twice is not None:
                raise RuntimeError(self._twice(twice))
            seen[index] = True
            served += int(index.numel())
            produced += 1
            last = batch
            if produced > skip:
                yield batch
        self._check_served(served, produced)
        for _ in range(max(cursor.total - max(produced, skip), 0)):  # even out the ranks (DDP)
            if last is None:
                raise RuntimeError(
                    f"rank {self.rank} streams none of the {len(self.selection)} kept samples of epoch {cursor.epoch} "
                    "but must run batches to keep step with the other ranks; keep more samples or use fewer processes."
                )
            yield IndexedSample(last.data, torch.full_like(last.index, -1), torch.zeros_like(last.weight))

    def _twice(self, index: int) -> str:
        source = self.data.stream_source
        column = getattr(source, "column", None)
        where = f" (id_column={column!r})" if column is not None else ""
        return (
            f"{type(source.dataset).__name__} yielded sample id {index} twice in epoch {self.cursor.epoch}"
            f"{where}: that sample would train twice and its score mix two samples' losses. Ids must be "
            f"unique in [0, {self.selection.num_samples}), one per sample (its stable position); with num_workers > 0 "
            "the dataset must also give each worker its own share (torch.utils.data.get_worker_info())."
        )

    def _check_served(self, served: int, produced: int) -> None:
        if served != self.rank_kept or produced != self.rank_batches:
            source = "litdata's split changed" if self.plan is not None else "the dataset yielded other samples"
            raise RuntimeError(
                f"rank {self.rank} streamed {served} kept samples in {produced} batches in epoch {self.cursor.epoch}, "
                f"but its planned share is {self.rank_kept} samples in {self.rank_batches} batches ({source}): "
                "pruned training would silently skip or repeat samples, so it stops here."
            )

    # Lightning saves and restores the train loader's state with the fit loop's (mid-epoch checkpoints)
    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.cursor.epoch,
            "batches": self.cursor.batches,
            "world": self.world,
            "workers": self.workers,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        batches = checked_batches(state_dict, self.cursor)
        then = {k: int(state_dict.get(k, v)) for k, v in self.state_dict().items() if k in ("world", "workers")}
        then["batch_size"] = int(state_dict.get("batch_size", self.batch_size))
        now = {"world": self.world, "workers": self.workers, "batch_size": self.batch_size}
        if then != now:
            raise ValueError(
                f"this checkpoint stopped in the middle of a streamed epoch run with {then}; the stream's order "
                f"depends on them, so resume it with the same processes, num_workers and batch_size (now {now}), "
                "or resume from a checkpoint saved at an epoch's end."
            )
        self.cursor.batches = batches
        if self.cursor.resume_at is None:  # no record of the epoch: skip the batches Lightning counts as trained
            warn_without_record(self.cursor.epoch, batches)
            self.cursor.resume_at, self.cursor.resume_batches = 0, batches


def repeated_id(index: torch.Tensor, seen: torch.Tensor) -> int | None:
    """An id of a batch's host ``index`` already ``seen`` this epoch or twice within the batch, else None (one
    sort of the batch, no per-sample Python): a repeated id would train one sample twice."""
    ordered = index.sort().values
    again = ordered[1:] == ordered[:-1]
    if not (bool(seen[ordered].any()) or bool(again.any())):
        return None
    return int(torch.cat([ordered[seen[ordered]], ordered[1:][again]])[0])


def streamed_epoch_loader(
    data: TrainData, place: EpochPlace, selection: Selection, cursor: EpochCursor
) -> tuple[StreamedEpochLoader, Selection, StreamCursor]:
    """The streamed train loader of ``cursor.epoch`` over ``data.stream_source``, the selection it trains, and
    the epoch's :class:`StreamCursor` that replaces ``cursor``."""
    _check_trainer(data, place, selection)
    world, rank = place.world, place.rank
    batch_size, workers = data.batch_size or 1, data.num_workers or 0
    epoch_stream = data.stream_source.for_epoch(cursor.epoch, world, rank, place.nodes, workers, batch_size)
    plan = None
    if data.stream_source.plans_split:
        keep = np.zeros(selection.num_samples, dtype=bool)
        keep[selection.indices.numpy()] = True
        plan = epoch_stream.kept_per_worker(keep)
    kept_per_rank = plan.sum(axis=1) if plan is not None else np.asarray([len(selection)])
    total = int(np.ceil(kept_per_rank / batch_size).max())  # the busiest rank's batches
    stream_cursor = StreamCursor(
        cursor.epoch,
        cursor.batches,
        0,
        cursor.resume_at,
        cursor.resume_batches,
        total=total,
        kept=len(selection),
        capacity=total * batch_size,
    )
    if stream_cursor.batches >= total:
        stream_cursor.position = stream_cursor.kept
    return StreamedEpochLoader(data, selection, stream_cursor, epoch_stream, plan, rank), selection, stream_cursor


def _check_trainer(data: TrainData, place: EpochPlace, selection: Selection) -> None:
    """Refuse the options the streamed path cannot honour exactly (each would skip kept samples)."""
    if selection.num_samples != data.stream_source.num_samples:
        raise RuntimeError(
            f"the streamed training set changed from {selection.num_samples} to {data.stream_source.num_samples} "
            "samples; per-sample scores are indexed by global sample index, so it must keep its size."
        )
    if data.drop_last:
        raise ValueError(
            "drop_last=True would drop every worker's last partial batch of kept samples on the streamed path; "
            "leave drop_last unset (or False), or use the map-style path (stream=False)."
        )
    if place.overfit_batches or place.limit_train_batches not in (1.0, None):
        raise ValueError(
            "Trainer(limit_train_batches / overfit_batches / fast_dev_run) cuts a streamed epoch short, and which "
            "kept samples it would then train depends on the stream's order, not known ahead; debug with the map-style "
            "path (stream=False) or train whole epochs."
        )
