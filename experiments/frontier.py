"""The benchmark that decides: each pruning method against the frontier of plain training for fewer epochs.

    python experiments/frontier.py                         # the CPU grid (SUMMARY_TASKS) and its summary
    python experiments/frontier.py --tasks cifar10         # one task; finished runs come from the cache
    python experiments/frontier.py --redo ted seta         # rerun only these methods' rows (code changed)
    python experiments/frontier.py --report-only           # rewrite the tables from the cache, train nothing
    python experiments/frontier.py --quick --out /tmp/f    # a tiny end-to-end grid (< 1 minute)

Per task, the **budget baseline** is plain training (method ``full``) for ``round(b * E)`` epochs, b in
1.5 / 1 / 0.7 / 0.5 / 0.3, its cosine LR decay spanning exactly that shorter run. Plain training's
accuracy against the saved fraction of sample-passes ``1 - round(b E) / E`` is the **frontier**. Every
pruning method trains E epochs under one shared constant schedule (1 warm-up epoch, the last 12.5% on
full data) whose per-epoch ratio is set so the run saves about 30 / 50 / 70% of sample-passes; InfoBatch
drops only a share of its below-mean-loss candidates and SeTa keeps only its window's groups of a random
subset, so their ratios are set from the task's expected candidate / window share (capped at 0.9) and
their achieved savings are reported. Seeds are paired: seed s gives
every method the same initialisation and data order. A method's **gain** is its accuracy minus the
frontier interpolated (linearly) at the saved fraction it achieved, per seed against that seed's
frontier; ± is the standard error of that paired difference. Decisions read validation accuracy (carved
from train); test accuracy is reported. Each run is the task's config (``configs/frontier/<task>.yaml``,
thin modules in ``frontier_modules.py``) trained by the ``lightning-ted frontier`` runner (``run_config``,
``fit_one``); specs and data live in ``frontier_tasks.py``, the tables in ``frontier_report.py``. Each finished
run is appended to
``experiments/results/frontier_<task>_runs.jsonl``, so an interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json  # noqa: F401  (frontier.json: used by frontier_gpu.py)
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import torch

# fmt: off
from frontier_modules import flipped_share, measure, method_entry, task_config  # noqa: F401, I001

# re-exported: frontier_gpu.py, ted_default.py and tests/experiments/test_frontier.py read them as frontier.<name>
from frontier_report import (  # noqa: F401
    SUMMARY_METHODS,
    SUMMARY_TASKS,
    full_at_e,
    markdown,
    plot,
    saved_at_tolerance,
    summarise,
    summary,
    write_report,
)
from frontier_tasks import (  # noqa: F401
    _DATA,
    ANNEAL,
    BASE_METHODS,
    BUDGETS,
    INFOBATCH_MAX_RATIO,
    METHOD_ORDER,
    METHODS,
    MODEL_LABELS,
    QUICK,
    REGENERATE,
    RESULTS,
    TARGETS,
    TASKS,
    TED_VARIANTS,
    WARMUP,
    Job,
    Result,
    TaskSpec,
    _CachedCIFAR,
    _cifar_train_module,
    build_net,
    cache_path,
    drop_from_cache,
    job_identity,
    make_pruner,
    read_cache,
    run_identity,
    schedule_ratio,
    stamped,
    task_data,
)

# fmt: on
from lightning_ted.frontier.config import run_config
from lightning_ted.frontier.gains import frontier_at  # noqa: F401
from lightning_ted.frontier.plan import Run
from lightning_ted.frontier.runner import fit_one


# ------------------------------------------------------------------------------------------ one run
def run_job(job: Job, spec: TaskSpec, accelerator: str = "cpu") -> Result:
    """Train one budget point or one (method, target, seed) through the ``lightning-ted frontier`` runner on
    the task's config, and measure it (``frontier_modules.measure``)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    task = task_config(spec)
    variant = method_entry(job.method)
    if job.method == "budget":
        ratio, run = 0.0, Run("full", job.level, job.seed, int(round(job.level * spec.epochs)))
    else:
        ratio = schedule_ratio(job.method, job.level, spec)
        run = Run("ted" if variant else job.method, ratio, job.seed, spec.epochs)
    cfg = run_config(task, run, Path(tempfile.gettempdir()) / "frontier_fits")  # nothing is written there
    cfg["trainer"]["accelerator"] = accelerator
    if variant:
        cfg["data"]["init_args"]["method"] = variant
    if spec.data.startswith("cifar10"):
        cfg["data"]["init_args"]["datamodule"]["init_args"]["seed"] = job.seed  # the augmentation stream
    record = fit_one(cfg, run, task.metric, spec.epochs, measure)
    extra = {k: v for k, v in record["extra"].items() if k == "flipped_share"}
    result = Result(
        spec.name, job.method, job.level, job.seed, run.epochs, ratio, record["saved"], record["extra"]["test_acc"],
        record["extra"]["val_acc"], record["fit_seconds"], spec.fingerprint(), extra,
    )  # fmt: skip
    return stamped(result, job, spec)


def grid(methods: list[str], budgets, targets, seeds_all: list[int], seeds_main: list[int]) -> list[tuple]:
    """(method, level, seed) for every run: budget points and the 50% target on ``seeds_all``, others on
    ``seeds_main``; ordered so the first ``len(seeds_main)`` seeds of everything finish first."""
    cells = []
    for seed in seeds_all:
        main = seed in seeds_main
        cells += [("budget", b, seed) for b in budgets]
        for target in targets:
            if main or math.isclose(target, 0.5):
                cells += [(m, target, seed) for m in methods if m != "full"]
    return sorted(cells, key=lambda c: (c[2] not in seeds_main, c[2]))


def run_grid(jobs: list[tuple[Job, TaskSpec]], out: Path, workers: int, accelerator: str) -> None:
    """Run ``jobs`` in ``workers`` processes, appending each finished run to its task's cache as it ends."""

    def record(r: Result) -> None:
        with open(cache_path(out, r.task), "a") as fh:
            fh.write(json.dumps(asdict(r)) + "\n")
        print(
            f"{r.task:14s} {r.method:9s} {r.level:<4} seed={r.seed} epochs={r.epochs:2d} saved={100 * r.saved:5.1f}% "
            f"test={r.test_acc:6.2f} val={r.val_acc:6.2f} {r.seconds:6.1f}s",
            flush=True,
        )

    if workers <= 1:
        for job, spec in jobs:
            record(run_job(job, spec, accelerator))
        return
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(run_job, job, spec, accelerator) for job, spec in jobs]
        for f in as_completed(futures):
            record(f.result())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(SUMMARY_TASKS), help="also: cifar10_long")
    parser.add_argument("--methods", nargs="+", default=list(BASE_METHODS), choices=METHOD_ORDER)
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the budget points and the 50%% target")
    parser.add_argument("--main-seeds", type=int, default=3, help="seeds for the 30%% and 70%% targets")
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS), help="saved fractions to run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redo", nargs="*", default=[], help="drop these methods' cached runs and rerun them")
    parser.add_argument("--report-only", action="store_true", help="write the tables from the cache only")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 seeds, 50%% target only")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    specs = QUICK if args.quick else TASKS
    unknown = [t for t in args.tasks if t not in specs]
    if unknown:
        parser.error(f"unknown tasks {unknown}; choose from {sorted(specs)}")
    missing = [m for m in args.methods if m not in METHODS and m not in TED_VARIANTS]
    if missing:
        print(f"note: methods {missing} are not registered in this checkout; their rows are pending", flush=True)
    methods = [m for m in args.methods if m in METHODS or m in TED_VARIANTS]
    targets = (0.5,) if args.quick else tuple(args.targets)
    seeds_all = list(range(2 if args.quick else args.seeds))
    seeds_main = seeds_all[: (1 if args.quick else args.main_seeds)]
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    jobs = []
    for name in args.tasks:
        spec = specs[name]
        if args.redo:
            drop_from_cache(args.out, name, args.redo)
        cached = read_cache(args.out, name, spec)
        done = {k for k, r in cached.items() if not r.stale}  # a stale run is made again
        todo = [Job(name, m, lvl, s) for m, lvl, s in grid(methods, BUDGETS, targets, seeds_all, seeds_main)]
        stale = sum(j.key in cached for j in todo if j.key not in done)
        todo = [j for j in todo if j.key not in done]
        print(f"{name}: {len(done)} runs cached, {len(todo)} to run ({stale} of them stale)", flush=True)
        jobs += [(j, spec) for j in todo]
    # every task's first seeds before any task's extra seeds, so an interrupted grid covers all tasks
    order = {name: i for i, name in enumerate(args.tasks)}
    jobs.sort(key=lambda js: (js[0].seed not in seeds_main, order[js[0].task]))
    start = time.perf_counter()
    if not args.report_only and jobs:
        run_grid(jobs, args.out, args.workers, args.accelerator)
    wall = time.perf_counter() - start if jobs and not args.report_only else None
    for name in args.tasks:
        results = list(read_cache(args.out, name, specs[name]).values())
        if results:
            print(write_report(specs[name], results, args.out, wall), flush=True)
    if not args.quick:
        print(summary(args.out), flush=True)


if __name__ == "__main__":
    main()
