"""Does the free internal-generalization estimate agree with a brute-force reading of the same quantity?

    python experiments/ig_validity.py                 # the full grid (36 runs, about 4 minutes on one core)
    python experiments/ig_validity.py --report-only   # the tables again from experiments/results/ig_validity_runs.csv
    python experiments/ig_validity.py --quick         # seconds: 1 seed, 2,000 MNIST images, 4 epochs, TED only

``lightning_ted/observe/generalization.py`` reads, at no extra cost, the loss change of samples trained in
two consecutive epochs (``kept_loss_change``) and of samples returning after sitting epochs out
(``pruned_loss_change``, own step removed, per epoch out), from the losses training already observes. Here
the real package trains (``DynamicPruningDataModule`` + ``TEDPruningCallback`` + ``Trainer.fit`` on CPU)
a 784-256-10 MLP (SGD momentum 0.9, lr 0.05, cosine LR by epoch, batch 128) on 10,000 Fashion-MNIST images
(16 epochs) and 10,000 MNIST images (12 epochs) under ``ConstantSchedule(ratio, warmup_epochs=1,
anneal=0.125)``, ratios 0.3 and 0.5, seeds 0-2, with three rules: TED (``"ted"``), RS2 (``RandomSubset()``)
and TED's selection with uniform candidates (``TEDVariant(ranking="random")``).

A brute-force callback evaluates every training sample at the start of each epoch and at the end of
training (``B[e]``: per-sample loss at the start of epoch ``e``, ``B[E]`` at the end; no-grad forward in
the module's training mode, as the free estimate's losses are) and records each epoch's kept set. Per
epoch it gives

- the issue's reading of epoch ``e``: ``bf_pruned(e)`` / ``bf_kept(e)``, mean ``B[e+1] - B[e]`` over the
  samples pruned / kept in ``e``; ``bf_gap = bf_pruned - bf_kept``, ``bf_ratio = bf_pruned / bf_kept``;
- the aligned counterpart of the free reading of epoch ``e`` (same samples, exact epoch boundaries): kept,
  mean ``B[e] - B[e-1]`` over the samples trained in ``e - 1`` and ``e``; pruned, over the samples trained
  in ``e`` whose previous training epoch ``e'`` is ``<= e - 2`` (and, as the free reading requires, whose
  own-step epoch ``e' + 1`` had continuing samples), ``sum(B[e] - B[e'+1]) / sum(e - e' - 1)``.

Writes ``experiments/results/ig_validity.md`` (agreement and mean tables) and ``ig_validity_runs.csv`` (one
row per run and epoch).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from lightning_ted import ConstantSchedule, DynamicPruningDataModule, TEDPruningCallback, pruned_loss
from lightning_ted.methods import RandomSubset
from lightning_ted.research import TEDVariant
from lightning_ted.zoo.datasets import load_image_classification

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "python experiments/ig_validity.py"


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    n_train: int
    epochs: int


TASKS = {"fashion": Task("fashion", "FashionMNIST", 10_000, 16), "mnist": Task("mnist", "MNIST", 10_000, 12)}
METHODS = {
    "ted": lambda: "ted",
    "random": RandomSubset,
    "ted_random": lambda: TEDVariant(ranking="random"),
}
RATIOS = (0.3, 0.5)
#: the correlations and means pool epochs from here on: epoch 1's kept interval holds the warm-up epoch's steep
#: first descent, which the free reading (observation to observation) and ``B[1] - B[0]`` split differently
FIRST_POOLED = 2
SEEDS = (0, 1, 2)
LR, BATCH = 0.05, 128

#: the "what it shows" paragraph of the full grid's report (written from its numbers; see the tables)
FINDINGS = """\
The free readings agree with brute force in level, and follow it over training where the pruned set is a uniform
draw; under TED's own selection the pruned reading keeps a smaller bias. **Kept** agrees in level everywhere (pooled
means within 0.015 loss/epoch, e.g. Fashion TED 0.3: -0.051 free vs -0.047 aligned) and follows the decline over
training (r 0.61-0.97 on MNIST, 0.21-0.84 on Fashion; centring the brute-force interval on the epoch boundary, as an
observation-to-observation interval is, raises most cells). Its first pruning epoch is not comparable (the free
interval starts mid-warm-up, the brute force at the initial weights), so pooling starts at epoch 2. **Pruned** is
within 0.021 of the aligned mean in every cell but RS2 at 0.5 on Fashion (0.028). That needed the match on the
previous loss: TED at 0.3 prunes the samples whose last observed loss was lowest (Fashion 0.106 vs 0.483 kept),
partly by noise, so their next loss regresses up (0.106 -> 0.135 while the kept fell 0.483 -> 0.410); against the
global kept rate the free pruned reading was +0.079 / +0.081 per epoch out (Fashion / MNIST) where brute force read
-0.014 / -0.009. Subtracting the kept rate of samples with the same previous loss brings it to +0.007 / -0.003.
Epoch to epoch the pruned reading still does not follow brute force under TED 0.3 (r -0.55 / -0.12); under uniform
selection r is 0.14-0.85. **Gap** (pruned minus kept, what sitting out cost per epoch): level right or a little low
under uniform selection (e.g. 0.032 vs 0.038, 0.022 vs 0.024), high under TED 0.3 on Fashion (0.061 vs 0.036) and
right on MNIST (0.033 vs 0.029); epoch to epoch it correlates well on MNIST (0.78-0.98 with the aligned gap,
0.82-0.97 with the issue's bf_gap(e-1)) and weakly on Fashion (0.13-0.60; 0.37-0.66). Its sign agrees in 74-100% of
epoch readings, trivially: pruned samples almost always improve less. **Empty readings**: RS2 at 0.5 has no kept
reading in the second epoch of each pair (it trains the complement of the first half) and the gap, which needs both
in one epoch, only at the first anneal epoch (3 readings per task; its correlations mean nothing). Brute force puts
the pruned samples' improvement at 8-26% of the kept rate (bf ratio) in every cell: they improve, but far more
slowly than the kept ones."""


# ------------------------------------------------------------------------------------------ model
class MLP(L.LightningModule):
    """784-256-10 ReLU MLP; per-sample cross-entropy through ``pruned_loss``; SGD momentum, cosine LR by epoch."""

    def __init__(self, epochs: int, lr: float = LR) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        self.epochs, self.lr = epochs, lr

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def per_sample_loss(self, batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y, reduction="none")

    def training_step(self, batch, batch_idx):
        return pruned_loss(self, self.per_sample_loss(batch))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class FullPass(Callback):
    """At every epoch start (after the pruning callback chose the epoch's kept set) and at the end of training:
    every training sample's loss (no grad, the module's current mode) and the epoch's kept mask."""

    def __init__(self, data: TensorDataset, chunk: int = 2500) -> None:
        self.data, self.chunk = data, chunk
        self.losses: list[Tensor] = []  # B[0..E]
        self.kept: list[Tensor] = []  # bool masks, one per epoch
        self.observed: list[Tensor] = []  # at each epoch start: every sample's last loss training observed

    @torch.no_grad()
    def _losses(self, module: MLP) -> Tensor:
        x, y = self.data.tensors
        parts = [
            module.per_sample_loss((x[i : i + self.chunk], y[i : i + self.chunk])) for i in range(0, len(y), self.chunk)
        ]
        return torch.cat(parts).double()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: MLP) -> None:
        selection = trainer.datamodule.current_selection
        mask = torch.zeros(len(self.data), dtype=torch.bool)
        mask[selection.indices] = True
        self.kept.append(mask)
        self.observed.append(trainer.datamodule.generalization.last_loss.double().clone())
        self.losses.append(self._losses(pl_module))

    def on_train_end(self, trainer: L.Trainer, pl_module: MLP) -> None:
        self.losses.append(self._losses(pl_module))


# ------------------------------------------------------------------------------------------ brute force
def previous_epoch(kept: Tensor, epoch: int) -> Tensor:
    """Each sample's last training epoch before ``epoch`` (-1 = never), from the ``(E, N)`` kept masks."""
    if epoch <= 0:
        return torch.full((kept.shape[1],), -1, dtype=torch.int64)
    epochs = torch.arange(epoch, dtype=torch.int64).unsqueeze(1)
    return torch.where(kept[:epoch], epochs, -1).amax(dim=0)


def aligned_brute_force(losses: Tensor, kept: Tensor, epoch: int) -> dict[str, float]:
    """The brute-force counterpart of the free reading of ``epoch``: same samples, exact epoch boundaries.

    ``losses``: ``(E + 1, N)``, row ``e`` each sample's loss at the start of epoch ``e`` (row ``E``: the end);
    ``kept``: ``(E, N)`` bool, the samples trained in each epoch. Kept: mean ``B[e] - B[e-1]`` over the samples
    trained in ``e - 1`` and ``e``. Pruned: over the samples trained in ``e`` whose previous training epoch
    ``e'`` is ``<= e - 2`` and whose own-step epoch ``e' + 1`` had continuing samples (the free reading skips
    the others), ``sum(B[e] - B[e'+1]) / sum(e - e' - 1)``: their change over exactly the epochs they sat out.
    ``kept_mid`` (a diagnostic): the kept samples' ``(B[e+1] - B[e-1]) / 2``, centred as the free interval is.

    >>> B = torch.tensor([[2.0, 2.0], [1.0, 1.5], [0.5, 1.5], [0.2, 1.0]])
    >>> K = torch.tensor([[True, True], [True, False], [True, True]])
    >>> r = aligned_brute_force(B, K, 2)
    >>> r["kept"], r["pruned"], r["kept_n"], r["returned_n"]
    (-0.5, 0.0, 1, 1)
    """
    nan = {"kept": math.nan, "kept_mid": math.nan, "pruned": math.nan, "kept_n": 0, "returned_n": 0, "out_epochs": 0}
    if epoch < 1:
        return nan
    prev = previous_epoch(kept, epoch)
    trained = kept[epoch]
    cont = trained & (prev == epoch - 1)
    has_cont = torch.zeros(kept.shape[0] + 1, dtype=torch.bool)  # epoch j had samples trained in j - 1 and j
    has_cont[1 : kept.shape[0]] = (kept[:-1] & kept[1:]).any(dim=1)
    back = trained & (prev >= 0) & (prev <= epoch - 2)
    back &= has_cont[(prev + 1).clamp(0, kept.shape[0])]
    out = {**nan, "kept_n": int(cont.sum()), "returned_n": int(back.sum())}
    if out["kept_n"]:
        out["kept"] = float((losses[epoch, cont] - losses[epoch - 1, cont]).mean())
        if epoch + 1 < losses.shape[0]:  # centred: half of e - 1 and half of e, as observation to observation spans
            out["kept_mid"] = float((losses[epoch + 1, cont] - losses[epoch - 1, cont]).mean()) / 2
    if out["returned_n"]:
        idx = torch.nonzero(back).squeeze(1)
        change = losses[epoch, idx] - losses[prev[idx] + 1, idx]
        out_epochs = epoch - prev[idx] - 1
        out["out_epochs"] = int(out_epochs.sum())
        out["pruned"] = float(change.sum()) / out["out_epochs"]
    return out


def issue_brute_force(losses: Tensor, kept: Tensor, epoch: int) -> dict[str, float]:
    """What pruning ``epoch`` cost: mean ``B[e+1] - B[e]`` over the samples pruned (``pruned``) and kept in it."""
    change = losses[epoch + 1] - losses[epoch]
    mask = kept[epoch]
    pruned = float(change[~mask].mean()) if bool((~mask).any()) else math.nan
    kept_change = float(change[mask].mean()) if bool(mask.any()) else math.nan
    return {"pruned": pruned, "kept": kept_change}


def selection_losses(observed: Tensor, losses: Tensor, kept: Tensor, epoch: int) -> dict[str, float]:
    """Of the samples trained in ``epoch - 1``: the mean loss training last observed for them (what the rule
    selected on, taken before their own step) and their fresh loss ``B[epoch]``, for those pruned and those kept
    in ``epoch``. A pruned set whose fresh loss lies above its observed one was selected partly on noise."""
    out = dict.fromkeys(("obs_pruned", "fresh_pruned", "obs_kept", "fresh_kept"), math.nan)
    if epoch < 1:
        return out
    before = kept[epoch - 1]
    for side, mask in (("pruned", before & ~kept[epoch]), ("kept", before & kept[epoch])):
        if bool(mask.any()):
            out[f"obs_{side}"] = float(observed[epoch, mask].mean())
            out[f"fresh_{side}"] = float(losses[epoch, mask].mean())
    return out


def _div(a: float, b: float) -> float:
    return a / b if b != 0 and math.isfinite(a) and math.isfinite(b) else math.nan


# ------------------------------------------------------------------------------------------ one run
def run_one(task: Task, data: TensorDataset, method: str, ratio: float, seed: int, epochs: int) -> list[dict]:
    """Train once; one row per epoch with the free, aligned brute-force and issue's brute-force readings."""
    L.seed_everything(seed, verbose=False)
    model = MLP(epochs)
    dm = DynamicPruningDataModule(
        data,
        method=METHODS[method](),
        schedule=ConstantSchedule(ratio, warmup_epochs=1, anneal=0.125),
        batch_size=BATCH,
        drop_last=False,
        seed=seed,
    )
    full = FullPass(data)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        callbacks=[TEDPruningCallback(progress_bar=False, summary=False), full],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    losses, kept, observed = torch.stack(full.losses), torch.stack(full.kept), torch.stack(full.observed)
    assert losses.shape[0] == epochs + 1 and kept.shape[0] == epochs, "the brute-force pass missed an epoch"
    rows = []
    for e in range(epochs):
        free = dm.generalization.reading(e)
        al = aligned_brute_force(losses, kept, e)
        bf = issue_brute_force(losses, kept, e)
        sel = selection_losses(observed, losses, kept, e)
        prev_bf = issue_brute_force(losses, kept, e - 1) if e >= 1 else {"pruned": math.nan, "kept": math.nan}
        rows.append(
            {
                "task": task.name,
                "method": method,
                "ratio": ratio,
                "seed": seed,
                "epoch": e,
                "kept_fraction": float(kept[e].float().mean()),
                "train_loss": float(losses[e].mean()),
                "free_kept": free.kept_loss_change,
                "free_pruned": free.pruned_loss_change,
                "free_gap": free.gap,
                "free_ratio": free.ratio,
                "free_kept_n": free.kept_samples,
                "free_returned_n": free.returned_samples,
                "free_out_epochs": free.out_epochs,
                "al_kept": al["kept"],
                "al_kept_mid": al["kept_mid"],
                "al_pruned": al["pruned"],
                "al_gap": al["pruned"] - al["kept"],
                "al_kept_n": al["kept_n"],
                "al_returned_n": al["returned_n"],
                "bf_kept": bf["kept"],
                "bf_pruned": bf["pruned"],
                "bf_gap": bf["pruned"] - bf["kept"],
                "bf_ratio": _div(bf["pruned"], bf["kept"]),
                "bf_gap_prev": prev_bf["pruned"] - prev_bf["kept"],
                **sel,
                "seconds": seconds,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------ report
def pearson(a: list[float], b: list[float]) -> float:
    """Pearson correlation of the finite pairs; ``nan`` below 3 pairs or without variance."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def sign_agreement(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    return float((np.sign(x[ok]) == np.sign(y[ok])).mean()) if ok.any() else math.nan


def _pairs(rows: list[dict], a: str, b: str) -> tuple[list[float], list[float]]:
    """The values of columns ``a`` and ``b`` over the rows where both are finite."""
    both = [(r[a], r[b]) for r in rows if math.isfinite(r[a]) and math.isfinite(r[b])]
    return [p[0] for p in both], [p[1] for p in both]


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summarise(cell: list[dict]) -> dict:
    """One cell (task x method x ratio): every seed and epoch from 2 on pooled (the free and aligned readings),
    every pruning epoch (the issue's reading); epoch 1's kept readings apart (``*_kept1``)."""
    rows = [r for r in cell if r["epoch"] >= FIRST_POOLED]
    first = [r for r in cell if r["epoch"] == 1]
    fk, ak = _pairs(rows, "free_kept", "al_kept")
    fkm, akm = _pairs(rows, "free_kept", "al_kept_mid")
    fp, ap = _pairs(rows, "free_pruned", "al_pruned")
    fg, ag = _pairs(rows, "free_gap", "al_gap")
    fgp, bgp = _pairs(rows, "free_gap", "bf_gap_prev")
    fk1, ak1 = _pairs(first, "free_kept", "al_kept")
    pruning = [r for r in cell if 0 < r["kept_fraction"] < 1]
    bk, bp = _pairs(pruning, "bf_kept", "bf_pruned")
    return {
        "seeds": len({r["seed"] for r in cell}),
        "n_kept": sum(math.isfinite(r["free_kept"]) for r in rows),
        "n_pruned": sum(math.isfinite(r["free_pruned"]) for r in rows),
        "n_gap": len(fg),
        "n_pruning": len(pruning),
        "r_kept": pearson(fk, ak),
        "r_kept_mid": pearson(fkm, akm),
        "r_pruned": pearson(fp, ap),
        "r_gap": pearson(fg, ag),
        "sign_gap": sign_agreement(fg, ag),
        "sign_gap_prev": sign_agreement(fgp, bgp),
        "r_gap_prev": pearson(fgp, bgp),
        "free_kept": _mean(fk),
        "al_kept": _mean(ak),
        "al_kept_mid": _mean(akm),
        "free_pruned": _mean(fp),
        "al_pruned": _mean(ap),
        "free_gap": _mean(fg),
        "al_gap": _mean(ag),
        "free_ratio": _div(_mean(fp), _mean(fk)),
        "free_kept1": _mean(fk1),
        "al_kept1": _mean(ak1),
        "bf_kept": _mean(bk),
        "bf_pruned": _mean(bp),
        "bf_gap": _mean([p - k for k, p in zip(bk, bp, strict=True)]),
        "bf_ratio": _div(_mean(bp), _mean(bk)),
        **{k: _mean([r[k] for r in pruning]) for k in ("obs_pruned", "fresh_pruned", "obs_kept", "fresh_kept")},
    }


def _f(value: float, digits: int = 2, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def report(rows: list[dict], findings: str, command: str, seconds: float | None = None) -> str:
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["task"], r["method"], float(r["ratio"])), []).append(r)
    summaries = {key: summarise(cell) for key, cell in cells.items()}
    out = [
        "# Internal generalization: the free estimate against brute force",
        "",
        f"Regenerate: `{command}` (tables only, from the runs CSV: `{COMMAND} --report-only`). "
        "Script and definitions: `experiments/ig_validity.py`; estimator: `lightning_ted/observe/generalization.py`."
        + (
            f" Its fits (brute-force passes included) took {seconds / 60:.1f} minutes on one CPU thread."
            if seconds
            else ""
        ),
        "",
        "## What it shows",
        "",
        findings.strip(),
        "",
        f"## Agreement (every seed and every epoch from {FIRST_POOLED} on with a reading pooled)",
        "",
        "*free*: `dm.generalization.reading(e)`; *aligned*: the same samples' brute-force change over exact epoch "
        "boundaries (*mid*: the kept samples' `(B[e+1] - B[e-1]) / 2`, centred as an observation-to-observation "
        "interval is); *bf(e-1)*: the issue's reading of the previous epoch (pruned minus kept change of its "
        "pruned and kept samples over that epoch). `r`: Pearson correlation over the epoch readings (runs x "
        "epochs, so it also counts how well the free reading follows the decline over training); `sign`: share of "
        "epoch readings with the same sign. `epochs k/p/g`: epoch readings with a free kept / pruned / gap value; the "
        "full-data anneal epochs count (their returning samples sat out the last pruning epochs).",
        "",
        "| task | method | ratio | seeds | epochs k/p/g | r kept | r kept (mid) | r pruned | r gap | sign gap | "
        "sign gap vs bf(e-1) | r gap vs bf(e-1) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, method, ratio), s in summaries.items():
        out.append(
            f"| {task} | {method} | {ratio:g} | {s['seeds']} | {s['n_kept']}/{s['n_pruned']}/{s['n_gap']} | "
            f"{_f(s['r_kept'])} | "
            f"{_f(s['r_kept_mid'])} | {_f(s['r_pruned'])} | {_f(s['r_gap'])} | {_f(s['sign_gap'])} | "
            f"{_f(s['sign_gap_prev'])} | {_f(s['r_gap_prev'])} |"
        )
    out += [
        "",
        "## Mean readings (loss change per epoch)",
        "",
        f"Free and aligned means are over the same epoch readings (epochs from {FIRST_POOLED} on where both are "
        "finite); *epoch 1*: the first pruning epoch's kept reading, left out of the pooled columns. The issue's "
        "brute-force reading is over the pruning epochs (`bf ratio` = mean pruned / mean kept change); "
        "`free ratio` likewise from the free means.",
        "",
        "| task | method | ratio | free kept | aligned kept | aligned kept (mid) | free pruned | aligned pruned | "
        "free gap | aligned gap | bf kept | bf pruned | bf gap | free ratio | bf ratio | free / aligned kept, "
        "epoch 1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, method, ratio), s in summaries.items():
        values = [s[k] for k in ("free_kept", "al_kept", "al_kept_mid", "free_pruned", "al_pruned", "free_gap")]
        values += [s[k] for k in ("al_gap", "bf_kept", "bf_pruned", "bf_gap")]
        cols = " | ".join(_f(v, 3, signed=True) for v in values)
        first = f"{_f(s['free_kept1'], 3, signed=True)} / {_f(s['al_kept1'], 3, signed=True)}"
        out.append(
            f"| {task} | {method} | {ratio:g} | {cols} | {_f(s['free_ratio'])} | {_f(s['bf_ratio'])} | {first} |"
        )
    out += [
        "",
        "## What the rules selected on (pruning epochs)",
        "",
        "Of the samples trained in `e - 1`, split by whether `e` pruned or kept them: the mean loss training last "
        "observed for them (before their own step in `e - 1`; what the free reading starts from) and their fresh "
        "loss `B[e]` at the start of `e` (what the brute force starts from).",
        "",
        "| task | method | ratio | pruned: observed | pruned: fresh | kept: observed | kept: fresh |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, method, ratio), s in summaries.items():
        cols = " | ".join(_f(s[k], 3) for k in ("obs_pruned", "fresh_pruned", "obs_kept", "fresh_kept"))
        out.append(f"| {task} | {method} | {ratio:g} | {cols} |")
    return "\n".join(out) + "\n"


FIELDS = [
    "task", "method", "ratio", "seed", "epoch", "kept_fraction", "train_loss",
    "free_kept", "free_pruned", "free_gap", "free_ratio", "free_kept_n", "free_returned_n", "free_out_epochs",
    "al_kept", "al_kept_mid", "al_pruned", "al_gap", "al_kept_n", "al_returned_n",
    "bf_kept", "bf_pruned", "bf_gap", "bf_ratio", "bf_gap_prev",
    "obs_pruned", "fresh_pruned", "obs_kept", "fresh_kept", "seconds",
]  # fmt: skip
_TEXT = {"task", "method"}
_INT = {"seed", "epoch", "free_kept_n", "free_returned_n", "free_out_epochs", "al_kept_n", "al_returned_n"}


def write_runs(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_runs(path: Path) -> list[dict]:
    def parse(key: str, value: str):
        if key in _TEXT:
            return value
        return int(value) if key in _INT else float(value)

    with path.open(newline="") as f:
        return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2,000 MNIST images, 4 epochs, TED at 0.3")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--ratios", nargs="+", type=float, default=list(RATIOS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for ig_validity.md and _runs.csv")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the runs CSV")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*val_dataloader.*")
    args.out.mkdir(parents=True, exist_ok=True)
    md, runs_csv = args.out / "ig_validity.md", args.out / "ig_validity_runs.csv"
    full_grid = not args.quick and argv_is_default(args)
    command = COMMAND + (" --quick" if args.quick else "")
    findings = FINDINGS if full_grid else "(a partial or quick grid: no findings written)"

    if args.report_only:
        rows = read_runs(runs_csv)
        text = report(rows, findings, command, fit_seconds(rows))
        md.write_text(text)
        print(text)
        return text

    if args.quick:
        plan = [(Task("mnist", "MNIST", 2_000, 4), "ted", 0.3, 0)]
    else:
        plan = [(TASKS[t], m, r, s) for t in args.tasks for m in args.methods for r in args.ratios for s in args.seeds]
    data_cache: dict[str, TensorDataset] = {}
    rows: list[dict] = []
    start = time.perf_counter()
    for i, (task, method, ratio, seed) in enumerate(plan):
        if task.name not in data_cache:
            data_cache[task.name] = load_image_classification(task.dataset, train=True, limit=task.n_train)
        new = run_one(task, data_cache[task.name], method, ratio, seed, task.epochs)
        rows += new
        write_runs(rows, runs_csv)  # after every run, so a long grid can be read while it runs
        print(
            f"[{i + 1}/{len(plan)}] {task.name} {method} {ratio:g} seed {seed}: {new[0]['seconds']:.0f}s "
            f"(total {(time.perf_counter() - start) / 60:.1f} min)",
            flush=True,
        )
    text = report(rows, findings, command, fit_seconds(rows))
    md.write_text(text)
    print(text)
    return text


def fit_seconds(rows: list[dict]) -> float:
    return sum({(r["task"], r["method"], r["ratio"], r["seed"]): r["seconds"] for r in rows}.values())


def argv_is_default(args: argparse.Namespace) -> bool:
    return (
        args.tasks == list(TASKS)
        and args.methods == list(METHODS)
        and args.ratios == list(RATIOS)
        and args.seeds == list(SEEDS)
    )


if __name__ == "__main__":
    main()
