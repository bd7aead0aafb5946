"""The runs of a frontier: plain training at each budget, every method at every ratio, on paired seeds."""

from __future__ import annotations

from dataclasses import dataclass

from lightning_ted.frontier.errors import FrontierRefusal


@dataclass(frozen=True)
class Run:
    """One training run. ``method == "full"``: plain training for ``level`` (b) of E epochs; otherwise the
    pruning method at schedule ratio ``level`` for E epochs. Seed ``s`` gives every run the same
    initialisation and data order, so runs of one seed are paired. A budget run is keyed by its epochs, not
    its b: ``--budgets 0.5`` and a later ``--budgets 0.7`` of E = 2 are the same 1-epoch run, trained once.

    >>> Run("full", 0.5, 0, 4).label, Run("ted", 0.3, 1, 8).key, Run("full", 0.5, 0, 4).key
    ('full b=0.5', 'ted|0.3|1', 'full|4 epochs|0')
    """

    method: str
    level: float
    seed: int
    epochs: int

    @property
    def key(self) -> str:
        if self.method == "full":
            return f"full|{self.epochs} epochs|{self.seed}"
        return f"{self.method}|{self.level}|{self.seed}"

    @property
    def label(self) -> str:
        return f"full b={self.level}" if self.method == "full" else f"{self.method} r={self.level}"


def budget_epochs(budgets: list[float], max_epochs: int) -> dict[float, int]:
    """``{b: round(b E)}`` for 1.0 and every budget, one per distinct epoch count (the first b named keeps it)."""
    out: dict[float, int] = {}
    for b in [1.0, *budgets]:
        epochs = int(round(b * max_epochs))
        if epochs < 1:
            raise FrontierRefusal(f"budget {b} of trainer.max_epochs={max_epochs} is {b * max_epochs:.2f} epochs: "
                                  "raise it or max_epochs so every budget trains at least one epoch")  # fmt: skip
        if epochs not in out.values():
            out[b] = epochs
    return out


def plan_runs(max_epochs: int, budgets: list[float], methods: list[str], ratios: list[float], seeds: int) -> list[Run]:
    """All runs, seed by seed (an interrupted command leaves whole pairs), the shortest budget first in each
    seed (it is the first to show a schedule that does not follow the run length)."""
    points = sorted(budget_epochs(budgets, max_epochs).items(), key=lambda kv: kv[1])
    runs = []
    for seed in range(seeds):
        runs += [Run("full", b, seed, epochs) for b, epochs in points]
        runs += [Run(m, r, seed, max_epochs) for m in methods for r in ratios]
    return runs
