"""Plots for people who would rather look than read (matplotlib, no display needed).

- :func:`plot_prune_ratio`: target and actual prune ratio per epoch, with the cumulative saved fraction and,
  when logged, ``ig/ratio`` (how fast the pruned samples improve against the kept ones) on a second axis.
- :func:`plot_score_distribution`: the score quantiles (and W&B histograms when present) per epoch.
- :func:`plot_accuracy_vs_saved`: accuracy against saved sample-passes for every method of a results CSV.

The first two read a run's history: a ``CSVLogger`` folder or ``metrics.csv``, a W&B run folder or
``.wandb`` file, or rows already read by :mod:`lightning_ted.observe.run_history`. Each returns the figure and
writes a PNG when ``out`` is given. ``python -m lightning_ted.observe.plots PATH...`` writes the PNGs of results
CSVs and run folders.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from lightning_ted.observe.run_history import epoch_rows, read_csv_metrics, read_wandb_run

History = str | Path | list[dict[str, Any]]


def load_history(source: History) -> list[dict[str, Any]]:
    """Per-epoch ``prune/*`` rows of a CSV or W&B run (or rows given directly)."""
    if isinstance(source, list):
        rows = source
    else:
        path = Path(source)
        is_wandb = path.suffix == ".wandb" or (path.is_dir() and any(path.rglob("run-*.wandb")))
        rows = read_wandb_run(path)["history"] if is_wandb else read_csv_metrics(path)
    rows = epoch_rows(rows)
    if not rows:
        raise ValueError(
            f"no per-epoch prune/* metrics in {source!r}: log the run with TEDPruningCallback and a CSV or W&B logger"
        )
    return rows


def _save(fig, out: str | Path | None):
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120, bbox_inches="tight")
    return fig


def plot_prune_ratio(source: History, out: str | Path | None = None, title: str = "Pruning over time"):
    """Target and actual prune ratio per epoch, and the cumulative fraction of sample-passes saved."""
    rows = load_history(source)
    epochs = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label, style in (
        ("prune/target_ratio", "target ratio", "--"),
        ("prune/actual_ratio", "actual ratio", "-"),
        ("prune/saved_fraction", "saved so far", ":"),
    ):
        ax.plot(epochs, [float(r.get(key, math.nan)) for r in rows], style, marker="o", label=label)
    ax.set(xlabel="epoch", ylabel="fraction of the training set", title=title, ylim=(0, 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no 0.5 ticks
    handles = ax.get_legend_handles_labels()
    if any("ig/ratio" in r for r in rows):  # internal generalization beside the ratio (observe/generalization.py)
        pace = ax.twinx()
        pace.plot(epochs, [float(r.get("ig/ratio", math.nan)) for r in rows], "-.", marker="s", color="tab:red",
                  label="pruned / kept loss pace (ig/ratio)")  # fmt: skip
        pace.set_ylabel("ig/ratio: 1 = pruned samples improve as fast as kept")
        pace.axhline(0.0, color="tab:red", lw=0.5, alpha=0.5)
        extra = pace.get_legend_handles_labels()
        handles = (handles[0] + extra[0], handles[1] + extra[1])
    ax.legend(*handles, fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_score_distribution(source: History, out: str | Path | None = None, title: str = "Score distribution"):
    """Score quantiles per epoch (median line, outer quantiles shaded); W&B histograms as a heat map."""
    rows = load_history(source)
    hist_rows = [r for r in rows if isinstance(r.get("prune/score_histogram"), dict)]
    fig, axes = plt.subplots(1, 2 if hist_rows else 1, figsize=(11 if hist_rows else 6, 3.5), squeeze=False)
    ax = axes[0][0]
    keys = sorted(k for k in rows[-1] if k.startswith("prune/score_q"))
    if not keys:
        raise ValueError("no prune/score_qNN metrics in the history: TEDPruningCallback(quantiles=...) logs them")
    epochs = [int(r["epoch"]) for r in rows]
    series = {k: [float(r.get(k, math.nan)) for r in rows] for k in keys}
    if len(keys) >= 2:
        ax.fill_between(epochs, series[keys[0]], series[keys[-1]], alpha=0.25, label=f"{keys[0][-3:]}-{keys[-1][-3:]}")
    mid = keys[len(keys) // 2]
    ax.plot(epochs, series[mid], marker="o", label=mid.removeprefix("prune/score_"))
    ax.set(xlabel="epoch", ylabel="score", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    ax.grid(alpha=0.3)
    if hist_rows:
        ax = axes[0][1]
        for r in hist_rows:
            h = r["prune/score_histogram"]
            bins, values = h["bins"], h["values"]
            centers = [(a + b) / 2 for a, b in zip(bins[:-1], bins[1:], strict=True)]
            total = sum(values) or 1
            ax.plot(centers, [v / total for v in values], label=f"epoch {int(r['epoch'])}")
        ax.set(xlabel="score", ylabel="share of samples", title="Score histogram per epoch")
        ax.legend(fontsize="small")
    return _save(fig, out)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an ``experiments/results/<task>.csv`` written by ``experiments/compare.py``."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def plot_accuracy_vs_saved(
    results: str | Path | list[dict[str, Any]], out: str | Path | None = None, title: str | None = None
):
    """Mean test accuracy (error bars: std over seeds) against saved sample-passes, one line per method."""
    rows = read_results(results) if not isinstance(results, list) else results
    if not rows:
        raise ValueError(f"no rows in {results!r}")
    by_method: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for r in rows:
        by_method[r["method"]].append((100 * float(r["saved"]), float(r["test_acc"]), float(r["test_acc_std"])))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, points in by_method.items():
        points.sort()
        xs, ys, es = zip(*points, strict=True)
        style = dict(linewidth=2.5, zorder=3) if method.startswith("ted") else dict(linewidth=1, alpha=0.8)
        if method == "full":
            ax.axhline(ys[0], color="black", linestyle="--", linewidth=1, label="full")
            continue
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=method, **style)
    ax.set(xlabel="sample-passes saved (%)", ylabel="test accuracy (%)", title=title or Path(str(results)).stem)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, out)


def _is_results_csv(path: Path) -> bool:
    if path.suffix != ".csv" or path.name == "metrics.csv":
        return False
    with path.open() as f:
        return "test_acc_std" in f.readline()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Draw PNGs: accuracy vs saved compute from compare.py results CSVs; prune ratio and score "
        "distribution from a run's CSVLogger folder / metrics.csv or W&B run folder"
    )
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: beside each input)")
    args = parser.parse_args(argv)
    for path in args.paths:
        folder = args.out or (path.parent if path.is_file() else path)
        if _is_results_csv(path):
            outs = [(plot_accuracy_vs_saved, folder / f"{path.stem}_accuracy_vs_saved.png")]
        else:
            stem = path.parent.name if path.is_file() else path.name
            outs = [
                (plot_prune_ratio, folder / f"{stem}_prune_ratio.png"),
                (plot_score_distribution, folder / f"{stem}_scores.png"),
            ]
        for draw, out in outs:
            plt.close(draw(path, out))
            print(out)


if __name__ == "__main__":
    main()
