"""Shared by the fine-tuning experiments: runs on paired seeds, in worker processes, summarised per method.

Each ``Run`` is one (method, target ratio, seed); ``full`` runs at ratio 0 on the same seeds, so every
other run is compared with the ``full`` run of its own seed (metric difference and wall-time speedup).
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Run:
    method: str
    ratio: float
    seed: int
    saved: float = 0.0
    metric: float = 0.0
    seconds: float = 0.0


def paired_runs(methods: list[str], ratios: list[float], seeds: list[int]) -> list[Run]:
    """``full`` once per seed, then every other method at every ratio and seed."""
    runs = [Run("full", 0.0, s) for s in seeds]
    return runs + [Run(m, r, s) for r in ratios for s in seeds for m in methods if m != "full"]


def run_all(fn: Callable, runs: list[Run], args, workers: int) -> list[Run]:
    """``fn(run, args)`` for every run, in ``workers`` processes; prints one line per finished run."""
    if workers <= 1:
        done = [fn(r, args) for r in runs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            done = list(pool.map(fn, runs, [args] * len(runs)))
    for r in done:
        saved = f"{100 * r.saved:5.1f}%"
        print(f"{r.method:10s} s={r.ratio} seed={r.seed} saved={saved} metric={r.metric:8.3f} {r.seconds:6.1f}s")
    return done


def table(runs: list[Run], header: str, metric: str, relative: bool, order: list[str]) -> str:
    """Markdown: saved share, metric mean ± std, paired Δ vs ``full`` (in % if ``relative``), speedup."""
    full = {r.seed: r for r in runs if r.method == "full"}
    delta = "Δ vs full (%)" if relative else "Δ vs full"
    lines = [
        header,
        "",
        f"| method | target s | saved | {metric} | {delta} | time (s) | speedup vs full |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    keys = sorted({(r.ratio, r.method) for r in runs}, key=lambda k: (k[0], order.index(k[1].split(":")[0])))
    for ratio, method in keys:
        group = [r for r in runs if (r.ratio, r.method) == (ratio, method)]
        values = [r.metric for r in group]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        if relative:
            diff = statistics.fmean(100 * (r.metric / full[r.seed].metric - 1) for r in group)
        else:
            diff = statistics.fmean(r.metric - full[r.seed].metric for r in group)
        speed = statistics.fmean(full[r.seed].seconds / r.seconds for r in group)
        saved = statistics.fmean(r.saved for r in group)
        secs = statistics.fmean(r.seconds for r in group)
        lines.append(
            f"| {method} | {ratio} | {100 * saved:.1f}% | {statistics.fmean(values):.2f} ± {sd:.2f} | {diff:+.2f} "
            f"| {secs:.1f} | {speed:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def write_runs(runs: list[Run], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(runs[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in runs)
