"""Benchmark (issue 2): MNIST small CNN, `full` vs TED at s = 0.3 and 0.5, several seeds, one process.

Prints a markdown table and writes experiments/results/mnist_ted_vs_full.{md,csv}: test accuracy (mean
and std over seeds), fraction of sample-passes saved, fit wall time, speedup vs `full` measured in the
same run, and that speedup as a share of the ideal 1 / (1 - saved). Runs are interleaved per seed
(full, then each TED ratio) so machine noise hits every method alike.

    python experiments/mnist_ted_vs_full.py [--seeds 0 1 2] [--epochs 10] [--beta 0.2]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import torch

from lightning_ted.methods import TED, FullData
from lightning_ted.zoo.datasets import load_image_classification
from lightning_ted.zoo.demo import run

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--beta", type=float, default=0.2)
    parser.add_argument("--limit", type=int, default=None, help="first N training images only (smoke runs)")
    parser.add_argument("--name", default="mnist_ted_vs_full")
    args = parser.parse_args(argv)

    train = load_image_classification("MNIST", args.data_root, train=True, limit=args.limit)
    test = load_image_classification("MNIST", args.data_root, train=False)
    rows: dict[str, list] = {}
    for seed in args.seeds:
        common = dict(epochs=args.epochs, beta=args.beta, seed=seed, train_set=train, test_set=test)
        configs = [("full", 0.0, FullData())] + [(f"ted s={r}", r, TED()) for r in args.ratios]
        for name, ratio, method in configs:
            result = run(method, name=name, ratio=ratio, **common)
            rows.setdefault(name, []).append(result)
            print(
                f"seed {seed} {name}: acc {result.accuracy:.2f} saved {result.saved_fraction:.3f} "
                f"time {result.fit_seconds:.1f}s",
                file=sys.stderr,
                flush=True,
            )

    full_acc = statistics.mean(r.accuracy for r in rows["full"])
    table = [
        "| method | target s | sample-passes saved | test acc (%) mean ± std | Δ acc vs full | fit time (s) "
        "| speedup vs full | ideal 1/(1-saved) | speedup / ideal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    records = []
    for name, results in rows.items():
        accs = [r.accuracy for r in results]
        # speedup per seed against that seed's full run, then averaged
        speedups = [f.fit_seconds / r.fit_seconds for f, r in zip(rows["full"], results, strict=True)]
        saved = statistics.mean(r.saved_fraction for r in results)
        ideal = 1 / (1 - saved)
        rec = dict(
            method=name.split()[0],
            target_ratio=0.0 if name == "full" else float(name.split("=")[1]),
            saved_fraction=saved,
            acc_mean=statistics.mean(accs),
            acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
            fit_seconds=statistics.mean(r.fit_seconds for r in results),
            speedup=statistics.mean(speedups),
            ideal_speedup=ideal,
            seeds=len(results),
        )
        records.append(rec)
        table.append(
            f"| {rec['method']} | {rec['target_ratio']:.1f} | {100 * saved:.1f}% | {rec['acc_mean']:.2f} ± "
            f"{rec['acc_std']:.2f} | {rec['acc_mean'] - full_acc:+.2f} | {rec['fit_seconds']:.1f} | "
            f"{rec['speedup']:.2f}x | {ideal:.2f}x | {rec['speedup'] / ideal:.2f} |"
        )
    header = (
        f"MNIST, SmallCNN, {args.epochs} epochs, batch 128, SGD+OneCycle, roller-coaster beta={args.beta}, "
        f"seeds {args.seeds}, {len(train)} train / {len(test)} test images, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads.\n"
    )
    text = header + "\n" + "\n".join(table) + "\n"
    print(text)
    if args.limit is None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}.md").write_text(text)
        with open(RESULTS / f"{args.name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)


if __name__ == "__main__":
    main()
