"""Issue 23's frontier step: the candidate reading against TED's default and the equal-weight random control.

    python experiments/ted_candidate.py                    # reads the frontier caches; trains nothing
    PYTHONPATH=experiments python experiments/frontier.py --tasks fashion noisy_fashion cifar10_noaug sst2 cifar10 \
        --methods ted_gradnorm ted_rand --targets 0.3 0.5 --seeds 5 --main-seeds 5   # the runs it reads
    PYTHONPATH=experiments python experiments/frontier.py --tasks ... --methods ted_igd --targets 0.3 \
        --seeds 5 --main-seeds 5

Three runs per (task, target, seed), all under the frontier's shared schedule at the same ratio, so they
save the same sample-passes: ``ted_igd`` (today's default, ``TED()``, rerun under this code), ``ted_gradnorm``
(the candidate, ``TED(score="grad_norm")``) and ``ted_rand`` (the control: TED's candidate share, staleness
rule, weights and step bound on uniform keys, ``TEDVariant(ranking="random")``), so a gain over the control is
selection, not the step size of the reweighted drop. At the 50% target the ratio (0.62) is above TED's
``q = 0.5``: every sample is a candidate, the drop is uniform and every score selects the same set, so the
default's 50% row is the candidate's (``test_at_a_ratio_of_q_or_more_every_score_gives_the_same_selection``).
Decisions read validation; test is shown beside it. Writes ``experiments/results/ted_candidate.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import frontier_report
from frontier_tasks import RESULTS

from lightning_ted.frontier.gains import mean_se

TASKS = ("fashion", "noisy_fashion", "cifar10_noaug", "sst2", "cifar10", "fashion60k")  # fashion60k: 30% only
DEFAULT, CANDIDATE, CONTROL = "ted_igd", "ted_gradnorm", "ted_rand"
TARGETS = (0.3, 0.5)


def runs_of(method: str, target: float) -> str:
    """The method whose runs stand for ``method`` at ``target``: the default's at 50% are the candidate's
    (at p >= q every score selects the same set, so they were run once)."""
    return CANDIDATE if method == DEFAULT and target >= 0.5 else method


def paired(runs: dict, a: str, b: str, target: float, key: str) -> tuple[float, float, int]:
    """Mean ± SE of ``a - b`` (accuracy ``key``) over the seeds both ran at ``target``."""
    a, b = runs_of(a, target), runs_of(b, target)
    seeds = sorted(set(runs.get((a, target), {})) & set(runs.get((b, target), {})))
    diffs = [getattr(runs[(a, target)][s], key) - getattr(runs[(b, target)][s], key) for s in seeds]
    m, se = mean_se(diffs)
    return m, se, len(seeds)


def _fmt(m: float, se: float, n: int) -> str:
    if n == 0:
        return "—"
    mark = "**" if n > 1 and se == se and m > 2 * se else ""
    return f"{mark}{m:+.2f} ± {se:.2f}{mark} ({n})"


def task_rows(task: str, out: Path) -> tuple[list[str], dict]:
    """Markdown rows for one task and the per-target decisions (candidate > control by 2 SE, > default)."""
    results = frontier_report.task_results(out, frontier_report.TASKS[task])
    runs: dict[tuple[str, float], dict[int, frontier_report.Result]] = {}
    for r in results:
        runs.setdefault((r.method, r.level), {})[r.seed] = r
    rows, _ = frontier_report.summarise(results)
    gain = {(r["method"], r["target"]): r for r in rows if r["target"] != ""}
    lines, decided = [], {}
    for target in TARGETS:
        cells = []
        for m in (DEFAULT, CANDIDATE, CONTROL):
            g = gain.get((runs_of(m, target), target))
            cells.append(f"{g['val_gain']:+.2f} ± {g['val_gain_se']:.2f} ({g['seeds']})" if g else "—")
        vs_control = paired(runs, CANDIDATE, CONTROL, target, "val_acc")
        vs_default = paired(runs, CANDIDATE, DEFAULT, target, "val_acc")
        default_vs_control = paired(runs, DEFAULT, CONTROL, target, "val_acc")
        test_vs_control = paired(runs, CANDIDATE, CONTROL, target, "test_acc")
        decided[target] = dict(
            above_control=vs_control[2] > 1 and vs_control[0] > 2 * vs_control[1],
            above_default=vs_default[2] > 1 and vs_default[0] > 0,
            seeds=vs_control[2],
        )
        lines.append(
            f"| {task} | {int(100 * target)}% | {' | '.join(cells)} | {_fmt(*vs_control)} | {_fmt(*vs_default)} | "
            f"{_fmt(*default_vs_control)} | {_fmt(*test_vs_control)} |"
        )
    return lines, decided


def tolerance_rows(task: str, out: Path) -> str:
    """Saved fraction at full minus 0.2 points (validation; test): fewer epochs, the default, the candidate."""
    rows, _ = frontier_report.summarise(frontier_report.task_results(out, frontier_report.TASKS[task]))
    full = frontier_report.full_at_e(rows)
    rows += [  # the default's points its stand-in ran (its 50% point is the candidate's run)
        {**r, "method": DEFAULT} for r in rows
        if r["target"] != "" and r["method"] != DEFAULT and runs_of(DEFAULT, r["target"]) == r["method"]
    ]  # fmt: skip
    if full is None:
        return f"| {task} | — | — | — |"
    cells = []
    for method in ("full", DEFAULT, CANDIDATE):
        v = frontier_report.saved_at_tolerance(rows, method, full["val_acc"], "val_acc")
        t = frontier_report.saved_at_tolerance(rows, method, full["test_acc"], "test_acc")
        cells.append(f"{100 * v:.0f}% ({100 * t:.0f}%)")
    return f"| {task} | {' | '.join(cells)} |"


def markdown(tasks: list[str], out: Path) -> str:
    lines = [
        '# TED\'s candidate reading on the frontier: `score="grad_norm"` against the default and the control',
        "",
        "Validation gain over the frontier (points, ± SE of the paired difference, seeds) of today's default",
        f'`{DEFAULT}` (`TED()`, igd), the candidate `{CANDIDATE}` (`TED(score="grad_norm")`) and the equal-weight',
        f'random control `{CONTROL}` (`TEDVariant(ranking="random")`), then paired validation differences at the',
        "same saved fraction (**bold**: above 0 by more than 2 SE) and the candidate minus the control on test.",
        "At 50% the ratio is above q = 0.5, every sample is a candidate and every score selects the same set:",
        "the default's 50% row is the candidate's runs. Regenerate: `python experiments/ted_candidate.py`.",
        "",
        "| task | target | default (val gain) | candidate (val gain) | control (val gain) | candidate − control "
        "(val) | candidate − default (val) | default − control (val) | candidate − control (test) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    decisions = {}
    for task in tasks:
        rows, decided = task_rows(task, out)
        lines += rows
        decisions[task] = decided
    above = [t for t in tasks if decisions[t][0.3]["above_control"]]
    beats = [t for t in tasks if all(decisions[t][x]["above_default"] for x in TARGETS)]
    beats30 = [t for t in tasks if decisions[t][0.3]["above_default"]]
    lines += [
        "",
        f"- Candidate above the control by more than 2 SE at 30% saved (validation): {len(above)} of {len(tasks)}"
        f" tasks ({', '.join(above) or 'none'}); the target asks for at least 3.",
        f"- Candidate above the default at 30% (validation, paired mean > 0): {len(beats30)} of {len(tasks)} "
        f"({', '.join(beats30) or 'none'}); at 30% and 50% both: {len(beats)} (at 50% the two are the same run).",
        "",
        "Saved fraction at full accuracy minus 0.2 points, validation (test), each curve joined to full data at 0:",
        "",
        f"| task | fewer epochs | default ({DEFAULT}) | candidate ({CANDIDATE}) |",
        "|---|---:|---:|---:|",
    ]
    lines += [tolerance_rows(t, out) for t in tasks]
    cached = [r for t in tasks for r in frontier_report.task_results(out, frontier_report.TASKS[t])]
    stale = sum(r.stale for r in cached)
    if stale:
        lines += ["", f"**{stale} of the {len(cached)} cached runs these tasks hold are stale** (made under another "
                  "method config, lightning-ted or library versions, or before runs recorded them; "
                  "`experiments/frontier.py` reruns them; the per-task tables mark each row)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    text = markdown(args.tasks, args.out)
    (args.out / "ted_candidate.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
