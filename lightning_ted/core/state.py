"""Per-sample score state: three flat tensors of length N, updated in place, vectorized.

Memory is 12 bytes per sample (float32 score, int32 times-seen, int32 last epoch seen), so 10^8 samples
fit in 1.2 GB; methods that track a second statistic (UCB's variance, forgetting's last correctness,
CAT's running mean) add one float32, 16 bytes in all. Observations made during an epoch are buffered as
packed per-batch chunks of 16 bytes per observed sample (never a per-sample Python list) and applied
once, after they have been gathered from all ranks, so every rank ends the epoch with a bit-identical
state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: float32 value columns of an observation, in packed order.
COLUMNS = ("loss", "term")
_INDEX_WORDS = 2  # an int64 index packs into two int32 words


@dataclass
class Observations:
    """Per-sample observations: dataset ``index`` (int64, -1 = skip) and float32 ``values`` (M x COLUMNS).

    ``pack`` turns them into one int32 tensor (bit-exact, 16 bytes per row), so an epoch's observations
    travel through a single ``all_gather`` and are checkpointed without a float64 round trip.
    """

    index: Tensor
    values: Tensor

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def loss(self) -> Tensor:
        return self.values[:, COLUMNS.index("loss")]

    @property
    def term(self) -> Tensor:
        return self.values[:, COLUMNS.index("term")]

    @classmethod
    def empty(cls) -> Observations:
        return cls(torch.zeros(0, dtype=torch.int64), torch.zeros((0, len(COLUMNS)), dtype=torch.float32))

    def pack(self) -> Tensor:
        index = self.index.to(torch.int64).contiguous().view(torch.int32).reshape(-1, _INDEX_WORDS)
        return torch.cat([index, self.values.to(torch.float32).contiguous().view(torch.int32)], dim=1)

    @classmethod
    def unpack(cls, packed: Tensor) -> Observations:
        index = packed[:, :_INDEX_WORDS].contiguous().view(torch.int64).reshape(-1)
        return cls(index, packed[:, _INDEX_WORDS:].contiguous().view(torch.float32))

    @classmethod
    def cat(cls, packed_chunks: Sequence[Tensor]) -> Observations:
        if not packed_chunks:
            return cls.empty()
        return cls.unpack(torch.cat([c.cpu() for c in packed_chunks]))

    def join(self, other: Observations) -> Observations:
        """These observations followed by ``other``."""
        return Observations(torch.cat([self.index, other.index]), torch.cat([self.values, other.values]))


@dataclass(frozen=True)
class Column:
    """A per-sample column a method keeps beside the scores, declared on the method (``PruningMethod.columns``,
    as torchmetrics declares a metric's state with ``add_state``): the state allocates, checkpoints and
    restores it. Every rank folds the same gathered observations into it, so it stays identical on every rank
    and needs no collective of its own.

    Args:
        name: the key methods read it by (``state.columns[name]``) and the checkpoint stores it under.
        dtype: its element type.
        fill: the value every sample starts with.
    """

    name: str
    dtype: torch.dtype = torch.float32
    fill: float = 0.0


class ScoreState:
    """Scores, visit counts and last-visit epochs for ``num_samples`` samples, and the method's own columns.

    Unscored samples hold ``+inf`` so selection keeps them until they have been measured once.

    Raises:
        ValueError: if ``num_samples`` < 1, or two columns share a name.
    """

    def __init__(self, num_samples: int, columns: Sequence[Column] = ()) -> None:
        if num_samples < 1:
            raise ValueError(f"the training set is empty (num_samples={num_samples}); nothing to prune")
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise ValueError(f"a method declares two per-sample columns of one name: {names}")
        self.num_samples = int(num_samples)
        self.score = torch.full((self.num_samples,), float("inf"), dtype=torch.float32)
        self.seen = torch.zeros(self.num_samples, dtype=torch.int32)
        self.last_epoch = torch.full((self.num_samples,), -1, dtype=torch.int32)
        n = self.num_samples
        self.columns: dict[str, Tensor] = {c.name: torch.full((n,), c.fill, dtype=c.dtype) for c in columns}
        # this rank's observations of the current epoch: per-step tensors as given (no work on the step
        # path), packed into one 16-byte-per-row chunk when read
        self._raw: list[tuple[Tensor, Tensor, Tensor | None]] = []
        self._packed: list[Tensor] = []
        self._restored = Observations.empty()  # every rank's observations of the epoch, from a checkpoint
        self._nonfinite_total = 0

    # ------------------------------------------------------------------ observations
    def observe(self, indices: Tensor, losses: Tensor, terms: Tensor | None) -> None:
        """Buffer one batch of observations on their device (no host sync, no arithmetic on the step path).

        Non-finite losses or terms are counted and marked with index -1 when the buffer is read, so they
        never reach the scores.
        """
        self._raw.append((indices.detach(), losses.detach(), None if terms is None else terms.detach()))

    def _pack_raw(self) -> None:
        """Fold the per-step tensors into one packed chunk (float32 values, -1 for non-finite rows)."""
        if not self._raw:
            return
        index = torch.cat([i.reshape(-1).to(torch.int64).cpu() for i, _, _ in self._raw])
        losses = torch.cat([lo.reshape(-1).to(torch.float32).cpu() for _, lo, _ in self._raw])
        terms = [torch.zeros_like(lo.reshape(-1)) if t is None else t.reshape(-1) for _, lo, t in self._raw]
        values = torch.stack([losses, torch.cat([t.to(torch.float32).cpu() for t in terms])], dim=1)
        finite = torch.isfinite(values).all(dim=1)
        self._nonfinite_total += int(finite.numel() - torch.count_nonzero(finite))
        obs = Observations(torch.where(finite, index, -1), torch.where(finite.unsqueeze(1), values, 0.0))
        self._packed.append(obs.pack())
        self._raw = []

    @property
    def nonfinite_count(self) -> int:
        """Per-sample losses or terms that were NaN/inf and never entered the scores."""
        self._pack_raw()
        return self._nonfinite_total

    @property
    def num_pending(self) -> int:
        raw = sum(int(i.numel()) for i, _, _ in self._raw)
        return len(self._restored) + raw + sum(int(c.shape[0]) for c in self._packed)

    def local_pending(self) -> Observations:
        """This rank's buffered observations of the epoch (not those restored from a checkpoint)."""
        self._pack_raw()
        return Observations.cat(self._packed)

    def pending(self) -> Observations:
        """All buffered observations of the epoch so far, on the CPU: restored ones first."""
        return self._restored.join(self.local_pending())

    def take_split(self) -> tuple[Observations, Observations]:
        """``(restored, local)``: only the local part still has to be gathered from the other ranks."""
        restored, local = self._restored, self.local_pending()
        self._restored, self._packed = Observations.empty(), []
        return restored, local

    def take_pending(self) -> Observations:
        restored, local = self.take_split()
        return restored.join(local)

    # ------------------------------------------------------------------ updates
    def visit(self, index: Tensor, values: Tensor, epoch: int) -> tuple[Tensor, Tensor, Tensor]:
        """Count one visit of each observed sample; return ``(idx, values, first_visit)`` for its score update.

        ``index`` may hold the same sample twice (DDP padding repeats a few samples); only its first
        occurrence counts, so a padded sample never enters the scores twice. Index -1 is skipped.
        ``values`` is ``(M,)`` or ``(M, C)`` (several columns filtered alike, e.g. TED's term and loss).
        """
        valid = index >= 0  # -1 marks padding and non-finite observations
        if not bool(valid.all()):
            index, values = index[valid], values[valid]
        idx = index.to(torch.int64)
        if idx.numel() and idx.max() >= self.num_samples:
            raise IndexError(
                f"observed sample index out of range [0, {self.num_samples}): the dataset changed size during "
                "training; pruning needs a fixed-length map-style dataset."
            )
        idx, values = first_occurrence(idx, values.to(torch.float32), self.num_samples)
        fresh = self.seen[idx] == 0
        self.seen[idx] += 1
        self.last_epoch[idx] = epoch
        return idx, values, fresh

    def apply(self, index: Tensor, values: Tensor, alpha: float, epoch: int) -> None:
        """Polyak update ``s <- alpha s + (1 - alpha) v`` for the samples in ``index`` (first visit: ``s <- v``)."""
        idx, values, fresh = self.visit(index, values, epoch)
        self.score[idx] = torch.where(fresh, values, alpha * self.score[idx] + (1.0 - alpha) * values)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self, all_ranks_pending: Observations | None = None) -> dict:
        """A snapshot; ``all_ranks_pending`` replaces this rank's buffered observations under DDP.

        A checkpoint is written by rank 0 alone, so the buffered observations of a mid-epoch checkpoint
        must be gathered from every rank first; on resume they are restored as already gathered.
        """
        local = self.local_pending() if all_ranks_pending is None else all_ranks_pending
        pending = self._restored.join(local)
        return {
            "num_samples": self.num_samples,
            "score": self.score.clone(),
            "seen": self.seen.clone(),
            "last_epoch": self.last_epoch.clone(),
            "columns": {name: column.clone() for name, column in self.columns.items()},
            "pending": pending.pack() if len(pending) else None,
            "nonfinite_count": self.nonfinite_count,
        }

    def load_state_dict(self, state: dict) -> None:
        n = int(state["num_samples"])
        if n != self.num_samples:
            raise ValueError(
                f"the checkpoint's pruning state is for a dataset of {n} samples but this training set has "
                f"{self.num_samples}; resume with the dataset the checkpoint was trained on."
            )
        self.score.copy_(state["score"])
        self.seen.copy_(state["seen"])
        self.last_epoch.copy_(state["last_epoch"])
        saved = state.get("columns")
        if saved is None and state.get("aux") is not None and len(self.columns) == 1:  # before columns had names
            saved = {next(iter(self.columns)): state["aux"]}
        for name, column in self.columns.items():
            if not saved or name not in saved:
                raise ValueError(
                    f"the checkpoint's pruning state has no {name!r} column, which this method keeps: another method "
                    "saved it. Resume with the method that wrote the checkpoint."
                )
            column.copy_(saved[name])
        pending = state.get("pending")
        self._restored = Observations.unpack(pending.clone()) if pending is not None else Observations.empty()
        self._raw, self._packed = [], []
        self._nonfinite_total = int(state.get("nonfinite_count", 0))

    def nbytes(self) -> int:
        tensors = (self.score, self.seen, self.last_epoch, *self.columns.values())
        return sum(t.element_size() * t.numel() for t in tensors)


def first_occurrence(idx: Tensor, values: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Drop repeated indices (all in ``[0, size)``), keeping each one's first occurrence (one scatter)."""
    dtype = torch.int32 if idx.numel() < torch.iinfo(torch.int32).max else torch.int64
    pos = torch.arange(idx.numel(), dtype=dtype)
    first = torch.full((size,), idx.numel(), dtype=dtype)
    first.scatter_reduce_(0, idx, pos, reduce="amin")
    keep = first[idx] == pos
    if bool(keep.all()):
        return idx, values
    return idx[keep], values[keep]


def gather_observations(
    obs: Observations, capacity: int, all_gather: Callable[[Tensor], Tensor] | None
) -> Observations:
    """Collect observations from every rank with one ``all_gather`` of their packed form.

    Each rank pads its rows to ``capacity`` (an upper bound every rank computes identically: its shard
    size) with index -1, so the collective has equal shapes; ``ScoreState.apply`` skips those rows.
    """
    if all_gather is None:
        return obs
    if len(obs) > capacity:
        raise RuntimeError(
            f"this rank observed {len(obs)} samples but its shard holds at most {capacity}; "
            "was the train dataloader replaced outside DynamicPruningDataModule?"
        )
    padded = Observations(
        torch.full((capacity,), -1, dtype=torch.int64), torch.zeros((capacity, len(COLUMNS)), dtype=torch.float32)
    )
    padded.index[: len(obs)] = obs.index
    padded.values[: len(obs)] = obs.values
    gathered = all_gather(padded.pack())
    return Observations.unpack(gathered.reshape(-1, gathered.shape[-1]).cpu())
