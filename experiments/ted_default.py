"""Choosing TED's default rule on the frontier: rank the TED variants by mean paired validation gain.

    python experiments/ted_default.py                      # the frontier caches of fashion, noisy_fashion, cifar10
    python experiments/ted_default.py --tasks fashion sst2

Reads the finished runs that ``experiments/frontier.py`` cached (it trains nothing). For every TED variant
(``ted`` is the current default; the others are ``frontier_report.TED_VARIANTS``) and, for reference, the peer
methods, it takes the gain over the frontier on validation (paired seeds) at the 50% and 70% targets of
each task, and ranks by the mean of those gains over every (task, target) cell. Only variants measured
in every cell are ranked; a diverged run (validation accuracy at chance) counts with its real gain.
Test gains are shown beside it, not used. Writes ``experiments/results/ted_default.md``.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import frontier_report
from frontier_tasks import RESULTS

CELLS = (0.5, 0.7)
PEERS = ("random", "infobatch", "seta")


def gains(tasks: list[str], out: Path) -> dict[str, dict[tuple[str, float], dict]]:
    """method -> (task, target) -> the frontier row (saved, val_gain, gain, ...) from the cached runs."""
    table: dict[str, dict[tuple[str, float], dict]] = {}
    for task in tasks:
        rows, _ = frontier_report.summarise(frontier_report.task_results(out, frontier_report.TASKS[task]))
        for row in rows:
            if row["target"] in CELLS:
                table.setdefault(row["method"], {})[(task, row["target"])] = row
    return table


def ranking(table: dict[str, dict], tasks: list[str]) -> list[tuple[str, float, float, bool, float]]:
    """(method, mean val gain, mean test gain, measured in every cell, SE of the mean val gain), complete
    ones first, best first. The SE combines the cells' paired standard errors (cells are independent runs)."""
    cells = [(t, c) for t in tasks for c in CELLS]
    out = []
    for method, by_cell in table.items():
        present = [by_cell[c] for c in cells if c in by_cell]
        complete = len(present) == len(cells)
        val = statistics.fmean(r["val_gain"] for r in present) if present else float("nan")
        test = statistics.fmean(r["gain"] for r in present) if present else float("nan")
        se = math.sqrt(sum(r["val_gain_se"] ** 2 for r in present)) / len(present) if present else float("nan")
        out.append((method, val, test, complete, se))
    return sorted(out, key=lambda m: (not m[3], -m[1]))


def markdown(table: dict[str, dict], tasks: list[str], output: str = "ted_default.md") -> str:
    cells = [(t, c) for t in tasks for c in CELLS]
    output = "" if output == "ted_default.md" else f" --output {output}"
    head = " | ".join(f"{t} {int(100 * c)}%" for t, c in cells)
    lines = [
        "# Choosing TED's default: mean paired validation gain over the frontier",
        "",
        f"Tasks {', '.join(tasks)}; targets 50% and 70% of sample-passes saved. Each cell: validation gain over the"
        " frontier (points, mean over paired seeds) at the saving the method reached (in brackets). Ranked by"
        " the mean over cells (± its standard error from the cells' paired SEs); only variants measured in every"
        " cell are ranked (the rest are listed after)."
        f" Regenerate: `python experiments/ted_default.py --tasks {' '.join(tasks)}{output}`.",
        "",
        f"| rank | method | options | {head} | mean val gain ± SE | mean test gain |",
        "|---:|---|---|" + "---:|" * len(cells) + "---:|---:|",
    ]
    rank = 0
    for method, val, test, complete, se in ranking(table, tasks):
        if method in PEERS:
            label = "(peer)"
        else:
            rank += complete
            label = str(rank) if complete else "incomplete"
        options = ", ".join(f"{k}={v!r}" for k, v in frontier_report.TED_VARIANTS.get(method, {}).items()) or (
            "default" if method == "ted" else ""
        )
        by_cell = table[method]
        vals = " | ".join(
            f"{by_cell[c]['val_gain']:+.2f} ({100 * by_cell[c]['saved']:.0f}%)" if c in by_cell else "—" for c in cells
        )
        lines.append(f"| {label} | {method} | {options} | {vals} | {val:+.2f} ± {se:.2f} | {test:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["fashion", "noisy_fashion", "cifar10"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--output", default="ted_default.md", help="file name under --out")
    args = parser.parse_args(argv)
    text = markdown(gains(args.tasks, args.out), args.tasks, args.output)
    (args.out / args.output).write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
