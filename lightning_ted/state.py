"""Per-sample score state: three flat tensors of length N, updated in place, vectorized.

Memory is 12 bytes per sample (float32 score, int32 times-seen, int32 last epoch seen), so 10^8 samples
fit in 1.2 GB. Observations made during an epoch are buffered as per-batch chunks (never a per-sample
Python list) and applied once, after they have been gathered from all ranks, so every rank ends the
epoch with a bit-identical state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: columns of a packed observation row: dataset index, per-sample loss, Taylor term.
OBS_COLUMNS = 3


class ScoreState:
    """Scores, visit counts and last-visit epochs for ``num_samples`` samples.

    Unscored samples hold ``+inf`` so selection keeps them until they have been measured once.
    """

    def __init__(self, num_samples: int) -> None:
        if num_samples < 1:
            raise ValueError(f"the training set is empty (num_samples={num_samples}); nothing to prune")
        self.num_samples = int(num_samples)
        self.score = torch.full((self.num_samples,), float("inf"), dtype=torch.float32)
        self.seen = torch.zeros(self.num_samples, dtype=torch.int32)
        self.last_epoch = torch.full((self.num_samples,), -1, dtype=torch.int32)
        self._pending: list[Tensor] = []
        self._nonfinite: list[Tensor] = []
        self._nonfinite_total = 0

    # ------------------------------------------------------------------ observations
    def observe(self, indices: Tensor, losses: Tensor, terms: Tensor | None) -> None:
        """Buffer one batch of observations on their device (no host sync on the training step).

        Non-finite losses or terms are counted and marked with index -1, so they never reach the scores.
        """
        losses = losses.detach().reshape(-1).to(torch.float64)
        terms = torch.zeros_like(losses) if terms is None else terms.detach().reshape(-1).to(torch.float64)
        finite = torch.isfinite(losses) & torch.isfinite(terms)
        indices = indices.detach().reshape(-1).to(device=losses.device, dtype=torch.float64)
        rows = torch.stack(
            [
                torch.where(finite, indices, torch.full_like(indices, -1.0)),
                torch.where(finite, losses, torch.zeros_like(losses)),
                torch.where(finite, terms, torch.zeros_like(terms)),
            ],
            dim=1,
        )
        self._pending.append(rows)
        self._nonfinite.append((~finite).sum())

    @property
    def nonfinite_count(self) -> int:
        """Per-sample losses or terms that were NaN/inf and never entered the scores."""
        count = self._nonfinite_total + sum(int(c) for c in self._nonfinite)
        self._nonfinite_total, self._nonfinite = count, []
        return count

    @property
    def num_pending(self) -> int:
        return sum(int(c.shape[0]) for c in self._pending)

    def pending(self) -> Tensor:
        """All buffered observation rows (M x 3, float64: index, loss, term)."""
        if not self._pending:
            return torch.zeros((0, OBS_COLUMNS), dtype=torch.float64)
        return torch.cat([c.cpu() for c in self._pending])

    def take_pending(self) -> Tensor:
        rows = self.pending()
        self._pending = []
        return rows

    # ------------------------------------------------------------------ updates
    def apply(self, rows: Tensor, values: Tensor, alpha: float, epoch: int) -> None:
        """Polyak update ``s <- alpha s + (1 - alpha) v`` for the samples in ``rows`` (first visit: ``s <- v``).

        ``rows`` may hold the same index twice (DDP padding repeats a few samples); only its first
        occurrence counts, so a padded sample never enters the scores twice.
        """
        valid = rows[:, 0] >= 0  # -1 marks padding and non-finite observations
        rows, values = rows[valid], values[valid]
        if rows.shape[0] == 0:
            return
        idx = rows[:, 0].to(torch.int64)
        if idx.min() < 0 or idx.max() >= self.num_samples:
            raise IndexError(
                f"observed sample index out of range [0, {self.num_samples}): the dataset changed size during "
                "training; pruning needs a fixed-length map-style dataset."
            )
        idx, values = _first_occurrence(idx, values.to(torch.float32), self.num_samples)
        old = self.score[idx]
        fresh = self.seen[idx] == 0
        self.score[idx] = torch.where(fresh, values, alpha * old + (1.0 - alpha) * values)
        self.seen[idx] += 1
        self.last_epoch[idx] = epoch

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        return {
            "num_samples": self.num_samples,
            "score": self.score.clone(),
            "seen": self.seen.clone(),
            "last_epoch": self.last_epoch.clone(),
            "pending": self.pending().clone(),
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
        pending = state.get("pending")
        self._pending = [pending.clone()] if pending is not None and pending.shape[0] else []
        self._nonfinite, self._nonfinite_total = [], int(state.get("nonfinite_count", 0))

    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.score, self.seen, self.last_epoch))


def _first_occurrence(idx: Tensor, values: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Drop repeated indices (all in ``[0, size)``), keeping each one's first occurrence (one scatter)."""
    pos = torch.arange(idx.numel(), dtype=torch.int64)
    first = torch.full((size,), idx.numel(), dtype=torch.int64)
    first.scatter_reduce_(0, idx, pos, reduce="amin")
    keep = first[idx] == pos
    return idx[keep], values[keep]


def gather_rows(rows: Tensor, capacity: int, all_gather: Callable[[Tensor], Tensor] | None) -> Tensor:
    """Collect observation rows from every rank with one ``all_gather``.

    Each rank pads its rows to ``capacity`` (an upper bound every rank computes identically: its shard
    size) with index -1, so the collective has equal shapes; ``ScoreState.apply`` skips those rows.
    """
    if all_gather is None:
        return rows
    if rows.shape[0] > capacity:
        raise RuntimeError(
            f"this rank observed {rows.shape[0]} samples but its shard holds at most {capacity}; "
            "was the train dataloader replaced outside DynamicPruningDataModule?"
        )
    padded = torch.full((capacity, OBS_COLUMNS), -1.0, dtype=torch.float64)
    padded[: rows.shape[0]] = rows
    return all_gather(padded).reshape(-1, OBS_COLUMNS).cpu()
