"""The benchmark that decides: each pruning method against the frontier of plain training for fewer epochs,
run by ``lightning-ted frontier`` over the task configs.

    PYTHONPATH=experiments python experiments/frontier.py                  # the CPU grid (SUMMARY_TASKS) + summary
    PYTHONPATH=experiments python experiments/frontier.py --tasks cifar10  # one task; finished runs are cached
    PYTHONPATH=experiments python experiments/frontier.py --report-only    # the tables from runs.jsonl, no training
    PYTHONPATH=experiments python experiments/frontier.py --quick --out /tmp/f   # a tiny end-to-end grid (~1 min)

For each task and method this writes the task's config (``configs/frontier/<task>.yaml``) with that method
to ``configs/frontier_methods/<task>_<method>.yaml`` and runs the command on it, all into one folder per
task (``results/frontier_<task>/``, whose ``runs.jsonl`` every config of the task shares, so plain training
runs once). The **budget baseline** is plain training for ``round(b * E)`` epochs, b in 1.5 / 1 / 0.7 / 0.5
/ 0.3, its cosine LR decay spanning exactly that shorter run: accuracy against the saved fraction of
sample-passes is the **frontier**. Every pruning method trains E epochs under one shared constant schedule
(1 warm-up epoch, the last 12.5% on full data) whose ratio is set so the run saves about 30 / 50 / 70% of
sample-passes (``--ratios``: InfoBatch drops only a share of its below-mean-loss candidates and SeTa keeps
only its window's groups of a random subset, so their ratios come from the task's expected candidate /
window share, capped at 0.9; their achieved savings are reported). Seeds are paired (``--seeds``: 5 for the
budget points and the 50% target, 3 for 30% and 70%). ``--measure frontier_modules.measure`` records test
and validation accuracy. The tables (``frontier_report.py``) read ``runs.jsonl`` and nothing else.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import yaml
from frontier_modules import CONFIGS, method_entry, task_config_dict
from frontier_report import MEASURE, SUMMARY_TASKS, runs_folder, summary, task_results, write_report
from frontier_tasks import (
    BASE_METHODS,
    BUDGETS,
    METHOD_ORDER,
    METHODS,
    QUICK,
    TARGETS,
    TASKS,
    TED_VARIANTS,
    TaskSpec,
    schedule_ratio,
)

from lightning_ted.frontier.command import main as frontier_command

METHOD_CONFIGS = CONFIGS.parent / "frontier_methods"


def method_config(spec: TaskSpec, method: str, accelerator: str | None = None) -> dict:
    """The task's config with ``method`` (a registered name or a ``TED_VARIANTS`` name) as its pruning method,
    on ``accelerator`` (default: the task config's own); SeTa anneals over the run's E epochs, as the benchmark
    always trained it."""
    cfg = task_config_dict(spec)
    if accelerator is not None:
        cfg["trainer"]["accelerator"] = accelerator
    entry = method_entry(method)
    if entry is None:
        cls = METHODS[method]
        entry = {"class_path": f"{cls.__module__}.{cls.__qualname__}"}
        if method == "seta":
            entry["init_args"] = {"max_epochs": spec.epochs}
    cfg["data"]["init_args"]["method"] = entry
    return cfg


def write_method_config(spec: TaskSpec, method: str, folder: Path, accelerator: str | None = None) -> Path:
    """:func:`method_config` as ``<folder>/<task>_<method>.yaml``, the file the command is given."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}_{method}.yaml"
    header = (f"# written by experiments/frontier.py from configs/frontier/{spec.name}.yaml with method {method}; "
              "the schedule's ratio is set per run (--ratios)\n")  # fmt: skip
    path.write_text(header + yaml.safe_dump(method_config(spec, method, accelerator), sort_keys=False))
    return path


def invocations(spec: TaskSpec, method: str, targets, seeds_all: int, seeds_main: int) -> list[list[str]]:
    """The command's arguments for ``method`` on ``spec``: the 50% target on every seed, the others on the main
    seeds (the budget points ride along on each, cached after the first)."""
    half = [t for t in targets if abs(t - 0.5) < 1e-9]
    groups = [(half, seeds_all), ([t for t in targets if t not in half], seeds_main)]
    out = []
    for group, seeds in groups:
        if group and seeds:
            ratios = [repr(schedule_ratio(method, t, spec)) for t in group]
            budgets = [repr(b) for b in BUDGETS if b != 1.0]
            out.append(["--budgets", *budgets, "--ratios", *ratios, "--seeds", str(seeds)] + ["--no-se"] * (seeds < 2))
    return out


def run_task(spec: TaskSpec, methods: list[str], args: argparse.Namespace) -> None:
    """Every method of ``spec`` through the command, into the task's folder; each config's own table is kept
    as ``frontier_<method>.md`` there."""
    out, folder = runs_folder(args.out, spec.name), args.configs or METHOD_CONFIGS
    for method in methods:
        config = write_method_config(spec, method, folder, args.accelerator)
        for extra in invocations(spec, method, args.targets, args.seeds, args.main_seeds):
            argv = ["--config", str(config), *extra, "--measure", args.measure, "--workers", str(args.workers),
                    "--threads", "1", "--out", str(out)]  # fmt: skip
            print("lightning-ted frontier " + " ".join(argv), flush=True)
            code = frontier_command(argv)
            if code != 0:  # a refusal (2, printed above it) or a stop (130, 143): the grid stops with it
                raise SystemExit(f"lightning-ted frontier stopped with exit status {code} on {config}")
            for name, kept in (("frontier.md", f"frontier_{method}.md"), ("frontier.png", f"frontier_{method}.png"),
                               ("overhead.json", f"overhead_{method}.json")):  # fmt: skip
                if (out / name).exists():  # the folder is shared: each config keeps its own
                    shutil.move(out / name, out / kept)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", help="default: the summary's tasks (--quick: its tasks); also "
                        "cifar10_long, fashion60k, cifar10_gpu (frontier_gpu.py)")  # fmt: skip
    parser.add_argument("--methods", nargs="+", default=list(BASE_METHODS), choices=METHOD_ORDER)
    parser.add_argument("--seeds", type=int, help="seeds for the budget points and the 50%% target (default 5)")
    parser.add_argument("--main-seeds", type=int, help="seeds for the 30%% and 70%% targets (default 3)")
    parser.add_argument("--targets", type=float, nargs="+", help="saved fractions to run (default 0.3 0.5 0.7)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="write the tables from runs.jsonl only")
    parser.add_argument("--quick", action="store_true", help="tiny sizes; by default 2 seeds, 50%% target only")
    parser.add_argument("--measure", default=MEASURE, help="the command's --measure (test and validation accuracy)")
    parser.add_argument("--accelerator", help="default: the task config's (cpu; gpu for cifar10_gpu)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default experiments/results)")
    parser.add_argument("--configs", type=Path, default=None, help="where the per-method configs are written")
    args = parser.parse_args(argv)
    specs = QUICK if args.quick else TASKS
    args.tasks = args.tasks or [t for t in SUMMARY_TASKS if t in specs]
    unknown = [t for t in args.tasks if t not in specs]
    if unknown:
        parser.error(f"unknown tasks {unknown}; choose from {sorted(specs)}")
    quick = ([0.5], 2, 1) if args.quick else (list(TARGETS), 5, 3)
    args.targets = args.targets or quick[0]
    args.seeds = args.seeds if args.seeds is not None else quick[1]
    args.main_seeds = args.main_seeds if args.main_seeds is not None else quick[2]
    if args.quick:
        args.out = args.out or Path("frontier_quick")
        args.configs = args.configs or args.out / "configs"
    args.out = args.out or Path(__file__).resolve().parent / "results"
    methods = [m for m in args.methods if m != "full" and (m in METHODS or m in TED_VARIANTS)]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    for name in args.tasks:
        if not args.report_only:  # the tables read runs.jsonl: a report trains and invokes nothing
            run_task(specs[name], methods, args)
    wall = None if args.report_only else time.perf_counter() - start
    for name in args.tasks:
        results = task_results(args.out, specs[name], args.accelerator, sorted({*TARGETS, *args.targets}))
        if results:
            print(write_report(specs[name], results, args.out, wall), flush=True)
    if not args.quick and set(args.tasks) & set(SUMMARY_TASKS):  # a GPU or extra task leaves the summary alone
        print(summary(args.out), flush=True)


if __name__ == "__main__":
    main()
