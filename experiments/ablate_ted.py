"""Ablation of TED's score variants against InfoBatch, reweighted random and full data, on paired seeds.

    python experiments/ablate_ted.py                        # Fashion-MNIST and SST-2, clean and 20% noisy
    python experiments/ablate_ted.py --tasks fashion --seeds 0 1 --quick

Every (task, method, ratio) trains on the same seeds as the baselines, so differences are paired per
seed. The TED default is chosen on the **validation** split (carved from train): the variant with the
best mean validation accuracy over all tasks and ratios among those that keep the staleness rule (so
the default trains every sample within K epochs). Test accuracy is then reported as the mean
paired difference against ``infobatch``, ``random`` (reweighted, RS2 with weight 1/(1-p)) and ``full``,
with its standard error over seeds. Also reported: the achieved saved fraction and, on the noisy tasks,
the share of flipped labels among the pruned sample-passes. Writes ``experiments/results/ablate_ted.md``
and ``ablate_ted_runs.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import compare
import torch

BASELINES = ["full", "infobatch", "random:reweight=true"]
VARIANTS = [
    "ted",  # the default: igd score, batch reference, q=0.5, max_staleness=4
    "ted:max_staleness=none",  # the default before this ablation: no staleness rule
    "ted:q=0.8,max_staleness=4",
    "ted:score=cross,q=0.8,max_staleness=4",
    "ted:score=ratio,q=0.8,max_staleness=4",
    "ted:score=cosine,q=0.8,max_staleness=4",
    "ted:reference=pruned,q=0.8,max_staleness=4",
    "ted:reference=all,score=cross,q=0.8,max_staleness=4",
]


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def paired(outcomes, method: str, ratio: float, baseline: str, task: str, key: str = "test_acc"):
    """Per-seed differences ``method - baseline`` on ``task`` (full is matched at any ratio)."""

    def at(m):
        r = 0.0 if m == "full" else ratio
        return {o.seed: getattr(o, key) for o in outcomes if o.task == task and o.method == m and o.ratio == r}

    mine, theirs = at(method), at(baseline)
    return [mine[s] - theirs[s] for s in sorted(mine) if s in theirs]


def _guarantees_coverage(variant: str) -> bool:
    return "max_staleness=none" not in variant


def choose_default(outcomes, tasks, ratios) -> tuple[str, dict[str, float]]:
    """The best mean validation accuracy over every task and ratio (never the test split).

    Only variants that keep the staleness rule are eligible: the default must train every sample at
    least once every K epochs. The others are reported beside them for reference.
    """
    means = {}
    for v in VARIANTS:
        vals = [o.val_acc for o in outcomes if o.method == v and o.task in tasks and o.ratio in ratios]
        means[v] = statistics.mean(vals) if vals else float("nan")
    eligible = [v for v in means if _guarantees_coverage(v) and not math.isnan(means[v])]
    return max(eligible, key=lambda v: means[v]), means


def report(outcomes, tasks, ratios, seeds, header: str) -> str:
    best, val_means = choose_default(outcomes, tasks, ratios)
    lines = [header, "", "## Choosing the default on validation", ""]
    lines += [
        "Eligible: the variants with the staleness rule (every sample trained within K epochs); the rest "
        "are shown for reference.",
        "",
        "| variant | mean validation accuracy over tasks and ratios (%) |",
        "|---|---:|",
    ]
    lines += [
        f"| {v}{' **(best)**' if v == best else '' if _guarantees_coverage(v) else ' (not eligible)'} | {m:.2f} |"
        for v, m in val_means.items()
    ]
    lines += ["", "## Test accuracy: paired differences (mean ± standard error over seeds, points)", ""]
    head = "| task | s | method | saved | test acc (%) | vs infobatch | vs random (reweighted) | vs full |"
    rule = "|---|---:|---|---:|---:|---:|---:|---:|"
    noisy_any = any(t.startswith("noisy_") for t in tasks)
    if noisy_any:
        head += " flipped share of pruned |"
        rule += "---:|"
    lines += [head, rule]
    for task in tasks:
        for ratio in ratios:
            for m in [*VARIANTS, "infobatch", "random:reweight=true"]:
                runs = [o for o in outcomes if o.task == task and o.method == m and o.ratio == ratio]
                if not runs:
                    continue
                acc = statistics.mean(o.test_acc for o in runs)
                saved = statistics.mean(o.saved for o in runs)
                cells = []
                for base in ("infobatch", "random:reweight=true", "full"):
                    d = paired(outcomes, m, ratio, base, task)
                    cells.append("—" if m == base or not d else f"{statistics.mean(d):+.2f} ± {_se(d):.2f}")
                name = f"**{m}**" if m == best else m
                line = f"| {task} | {ratio} | {name} | {100 * saved:.1f}% | {acc:.2f} | " + " | ".join(cells) + " |"
                if noisy_any:
                    shares = [o.noisy_share_pruned for o in runs if not math.isnan(o.noisy_share_pruned)]
                    line += f" {100 * statistics.mean(shares):.1f}% |" if shares else " — |"
                lines.append(line)
        full = [o.test_acc for o in outcomes if o.task == task and o.method == "full"]
        if full:
            lines.append(
                f"| {task} | 0 | full | 0.0% | {statistics.mean(full):.2f} | | | |" + (" — |" if noisy_any else "")
            )
    lines += ["", f"Seeds {seeds}. A difference counts as a win when it exceeds two standard errors.", ""]
    return "\n".join(lines)


def _key(run) -> tuple:
    return (run.task, run.method, float(run.ratio), int(run.seed))


def _read_cache(path: Path | None) -> dict[tuple, compare.Outcome]:
    if path is None or not path.exists():
        return {}
    outcomes = [compare.Outcome(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return {_key(o): o for o in outcomes}


def _appender(path: Path | None):
    def append(outcome: compare.Outcome) -> None:
        if path is not None:
            with open(path, "a") as fh:
                fh.write(json.dumps(asdict(outcome)) + "\n")

    return append


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["fashion", "noisy_fashion", "sst2", "noisy_sst2"])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--beta", type=float, default=compare.DEFAULT_BETA)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help="3 epochs, 800 training samples (keeps the script working)"
    )
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=compare.RESULTS)
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="JSON-lines file of finished runs: each run is appended when it ends and skipped when found "
        "(an interrupted grid resumes where it stopped)",
    )
    args = parser.parse_args(argv)
    threads = max(1, torch.get_num_threads() // max(1, args.workers))
    cached = _read_cache(args.cache)
    outcomes = []
    start = time.perf_counter()
    for task in args.tasks:
        base = task.removeprefix("noisy_")
        settings = compare.Settings(
            epochs=3 if args.quick else args.epochs,
            beta=args.beta,
            batch_size=args.batch_size,
            n_train=800 if args.quick else compare.SIZES.get(base, 10000),
            n_val=200 if args.quick else 1000,
            n_test=500 if args.quick else 10000,
            threads=threads,
            root=args.data_root,
        )
        jobs = [
            compare.Job(task, m, 0.0 if m == "full" else r, seed)
            for seed in args.seeds
            for m in [*BASELINES, *VARIANTS]
            for r in ([0.0] if m == "full" else args.ratios)
        ]
        done = [cached[_key(j)] for j in jobs if _key(j) in cached]
        todo = [j for j in jobs if _key(j) not in cached]
        outcomes += done + compare._run_all(todo, settings, args.workers, on_done=_appender(args.cache))
    header = (
        f"# TED ablation: {args.tasks}, ratios {args.ratios}, {3 if args.quick else args.epochs} epochs, "
        f"roller-coaster beta={args.beta}, {args.workers} parallel runs x {threads} threads, torch "
        f"{torch.__version__}; this invocation took {time.perf_counter() - start:.0f} s, the runs "
        f"{sum(o.seconds for o in outcomes) / 60:.0f} CPU-process minutes in all (cached runs included)"
    )
    text = report(outcomes, args.tasks, args.ratios, args.seeds, header)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablate_ted.md").write_text(text)
    with open(args.out / "ablate_ted_runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(outcomes[0])))
        writer.writeheader()
        writer.writerows(asdict(o) for o in outcomes)
    print(text)


if __name__ == "__main__":
    main()
