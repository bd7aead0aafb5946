"""``lightning-ted frontier --config my.yaml``: is pruning worth it on my task?

Trains the config's model and data on all data for E = ``trainer.max_epochs`` and for fewer epochs
(``--budgets``, fractions of E: the frontier), and with the config's pruning method and any others named
(``--methods``) at its ratio or ``--ratios``, on ``--seeds`` paired seeds; writes ``runs.jsonl`` (one line
per finished run: an interrupted command resumes), ``frontier.md`` (table, verdict, next step, the command's
own overhead), ``frontier.png``, and logs both to W&B when the config has a ``WandbLogger``. SIGTERM or
Ctrl-C writes the report of the runs finished so far, marked partial, and exits with 128 + the signal.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from lightning_ted.frontier.cache import append_run, read_runs
from lightning_ted.frontier.config import (
    TaskConfig,
    load_config,
    load_measure,
    logger_callbacks,
    method_spec,
    run_config,
)
from lightning_ted.frontier.errors import FrontierRefusal, Interrupted
from lightning_ted.frontier.gains import advice, summarise, verdict
from lightning_ted.frontier.plan import Run, budget_epochs, plan_runs
from lightning_ted.frontier.report import log_wandb, markdown, plot
from lightning_ted.frontier.runner import fit_one
from lightning_ted.frontier.targets import check_ratios, ratio_for_target
from lightning_ted.methods import METHODS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lightning-ted frontier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--config", required=True, help="the LightningCLI YAML you train with")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.7], help="fractions of E (1.0 always runs)")
    p.add_argument("--methods", nargs="*", default=[], help="methods besides the config's: infobatch random seta ...")
    p.add_argument("--ratios", type=float, nargs="+", help="schedule ratios (default: the config's)")
    p.add_argument("--targets", type=float, nargs="+", help="instead of --ratios: shares of sample-passes to save")
    p.add_argument("--seeds", type=int, default=3, help="paired seeds 0..N-1 (default 3)")
    p.add_argument("--no-se", action="store_true", help="allow one seed: gains without standard errors")
    p.add_argument("--metric", help="default: the config's ModelCheckpoint monitor, else val_acc")
    p.add_argument("--mode", choices=("max", "min"), help="default: the checkpoint's mode, else from the name")
    p.add_argument("--out", type=Path, default=Path("frontier"), help="output folder (default ./frontier)")
    p.add_argument("--report-only", action="store_true", help="redraw from runs.jsonl, train nothing")
    p.add_argument("--workers", type=int, default=1, help="runs trained at once, each in its own process")
    p.add_argument("--threads", type=int, help="torch threads per run (default: OMP_NUM_THREADS, else CPUs / workers)")
    p.add_argument("--measure", metavar="MODULE.FUNCTION",
                   help="after each run, FUNCTION(trainer, model, datamodule) -> dict of numbers (e.g. test accuracy): "
                        "recorded per run and tabled in frontier.md")  # fmt: skip
    p.add_argument("--model-class", help="class of a config's model: that has init args only (LightningCLI(MyModel))")
    p.add_argument("--data-class", help="class of a config's data: that has init args only")
    return p


def default_threads(workers: int) -> int:
    """Torch threads per run: ``OMP_NUM_THREADS`` when set, else the CPUs this process may use shared by the
    workers, so runs neither oversubscribe the machine nor change speed with torch's own default."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(1, workers))


def _progress(done: int, total: int, elapsed: float, record: dict, metric: str) -> None:
    left = elapsed / done * (total - done)
    bar = "#" * round(20 * done / total) + "." * (20 - round(20 * done / total))
    label = Run(record["method"], record["level"], record["seed"], record["epochs"]).label
    print(f"frontier [{bar}] {done}/{total} runs, {elapsed / 60:.1f} min, ~{left / 60:.1f} min left | {label} "
          f"seed {record['seed']}: {metric} {record['metric']:.4g}, saved {100 * record['saved']:.1f}%, "
          f"{record['fit_seconds']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip


def _worker_signals() -> None:
    """In a worker: default SIGTERM and no SIGINT, so the command (which kills its workers) decides the stop."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued runs and kill the running ones: a stopped command does not wait for fits it drops."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public kill before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()


def execute(
    task: TaskConfig, todo: list[Run], out: Path, workers: int, fingerprint: str, threads: int,
    measure: str | None = None,
) -> tuple[float, float, float]:  # fmt: skip
    """Train ``todo`` with ``threads`` torch threads each, appending each finished run to ``runs.jsonl``.
    Returns the summed fit seconds, the seconds of this phase that were not fits (in-process: all of them;
    with workers: each run's own instantiation and evaluation) and the phase's wall seconds."""
    start, fits, runs = time.perf_counter(), 0.0, 0.0
    fn = load_measure(measure) if measure else None  # refused here, before any run trains
    jobs = [(run_config(task, r, out / "fits"), r, task.metric, task.max_epochs, fn, threads) for r in todo]

    def finish(record: dict, done: int) -> None:
        nonlocal fits, runs
        record["config"] = task.full_fingerprint() if record["method"] == "full" else fingerprint
        if measure:
            record["measure"] = measure
        append_run(out / "runs.jsonl", record)
        fits, runs = fits + record["fit_seconds"], runs + record["run_seconds"]
        _progress(done, len(jobs), time.perf_counter() - start, record, task.metric)

    if workers <= 1:
        for i, job in enumerate(jobs, 1):
            finish(fit_one(*job), i)
        phase = time.perf_counter() - start
        return fits, phase - fits, phase
    with ProcessPoolExecutor(workers, initializer=_worker_signals) as pool:
        pending, done = {pool.submit(fit_one, *job) for job in jobs}, 0
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    done += 1
                    finish(future.result(), done)
        except BaseException:
            _stop_workers(pool)
            raise
    return fits, runs - fits, time.perf_counter() - start


def overhead_line(out: Path) -> str | None:
    path = out / "overhead.json"
    if not path.exists():
        return None
    o = json.loads(path.read_text())
    return (f"Command overhead (everything but the fits: start-up, config, instantiation, evaluation, cache, "
            f"report) in the last invocation that trained: {o['overhead_s']:.1f} s of {o['grid_s']:.1f} s, the fits "
            f"summed over its {o['runs']} runs plus that overhead ({100 * o['share']:.1f}%).")  # fmt: skip


def frontier(args: argparse.Namespace, argv: list[str], start: float) -> str:
    """Plan, run what is missing, report; returns the verdict."""
    if args.seeds < 2 and not args.no_se:
        raise FrontierRefusal(
            f"--seeds {args.seeds} gives no standard error, so no gain can be told from noise: "
            "use --seeds 2 or more (3 by default), or pass --no-se to report gains without one"
        )
    task = load_config(args.config, args.metric, args.mode, args.model_class, args.data_class)
    methods = [task.method] + [m for m in args.methods if m != task.method]
    for m in args.methods:
        method_spec(m)  # refuses an unknown name before anything trains
    methods = [m for m in methods if m != "full"]
    if not methods:
        raise FrontierRefusal("the config trains without pruning (FullData): name methods with --methods ted ...")
    ratios = args.ratios or [task.ratio]
    if args.targets:
        if args.ratios:
            raise FrontierRefusal("--ratios and --targets both given: name the schedule ratios or the savings")
        schedule = task.base["data"].get("init_args", {}).get("schedule")
        ratios = [ratio_for_target(schedule if isinstance(schedule, dict) else None, t, task.max_epochs)
                  for t in args.targets]  # fmt: skip
        pairs = zip(args.targets, ratios, strict=True)
        print("frontier: targets " + ", ".join(f"{t:.0%} -> ratio {r}" for t, r in pairs), flush=True)
    zero_prunes = all(getattr(METHODS.get(m), "prunes_at_zero_ratio", False) for m in methods)
    check_ratios(ratios, "--ratios" if args.ratios else "the config's schedule ratio", zero_prunes)
    lengths = budget_epochs(args.budgets, task.max_epochs)
    for b in dict.fromkeys(b for b in args.budgets if b not in lengths):
        print(f"note: budget {b} is {round(b * task.max_epochs)} epochs, as another budget: trained once", flush=True)
    for name in logger_callbacks(task):
        print(f"note: {name} is left out of each run: runs train without a logger, and it only feeds one", flush=True)
    if args.threads is not None and args.threads < 1:
        raise FrontierRefusal(f"--threads {args.threads}: give 1 or more torch threads per run")
    threads = args.threads or default_threads(args.workers)
    plan = plan_runs(task.max_epochs, args.budgets, methods, ratios, args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    fingerprint = task.fingerprint()
    done, other = read_runs(args.out / "runs.jsonl", fingerprint, task.full_fingerprint())
    if other:
        print(f"note: {other} runs in {args.out / 'runs.jsonl'} belong to another config (another method's, in a "
              "shared folder) or other lightning-ted/library versions: not used for this one", flush=True)  # fmt: skip
    planned = {r.key for r in plan}
    unmeasured = [k for k, r in done.items() if args.measure and r.get("measure") != args.measure and k in planned]
    if unmeasured and not args.report_only:
        print(f"note: {len(unmeasured)} cached runs were made without --measure {args.measure}; trained again so "
              "every run has it", flush=True)  # fmt: skip
        done = {k: r for k, r in done.items() if k not in unmeasured}
    todo = [r for r in plan if r.key not in done]
    print(f"frontier: {len(plan) - len(todo)} of {len(plan)} runs cached, {len(todo)} to train"
          + (f", {threads} torch threads per run" if todo and not args.report_only else ""), flush=True)  # fmt: skip
    fits, stopped = None, None
    if todo and not args.report_only:
        try:
            fits, phase_overhead, phase = execute(
                task, todo, args.out, args.workers, fingerprint, threads, args.measure
            )
        except Interrupted as stop:
            stopped = stop
        done, _ = read_runs(args.out / "runs.jsonl", fingerprint, task.full_fingerprint())
    records = list(done.values())
    if not records:
        if stopped is not None:
            raise stopped
        raise FrontierRefusal(
            f"no finished runs in {args.out / 'runs.jsonl'} for this config: run without --report-only"
        )
    rows = summarise(records, task.mode)
    line = verdict(rows, task.metric)
    notes = advice(rows, task.metric, task.mode)
    plot(rows, task.metric, args.out / "frontier.png")
    partial = None
    if stopped is not None:
        finished = sum(r.key in done for r in plan)
        partial = (f"stopped by {stopped.name} after {finished} of {len(plan)} runs; rerun the same command to train "
                   f"the other {len(plan) - finished} (finished runs are cached)")  # fmt: skip
    elif fits is not None:
        wall = time.perf_counter() - start
        overhead = wall - phase + phase_overhead
        o = dict(overhead_s=overhead, grid_s=overhead + fits, share=overhead / (overhead + fits), runs=len(todo))
        (args.out / "overhead.json").write_text(json.dumps(o) + "\n")
    head = dict(config=args.config, metric=task.metric, mode=task.mode, max_epochs=task.max_epochs,
                command="lightning-ted frontier " + shlex.join(a for a in argv if a != "--report-only"),
                threads=threads_line(records))  # fmt: skip
    text = markdown(rows, head, line, overhead_line(args.out), notes, partial)
    (args.out / "frontier.md").write_text(text)
    print(text, flush=True)
    if stopped is not None:
        stopped.report = args.out / "frontier.md"
        raise stopped
    if task.wandb is not None and not args.report_only:
        log_wandb(task.wandb, rows, line, args.out / "frontier.png", notes)
    return line


def threads_line(records: list[dict]) -> str | None:
    """The torch thread counts the runs recorded (several: cached runs of other ``--threads``, times mixed)."""
    counts = sorted({r["threads"] for r in records if r.get("threads")})
    missing = sum(not r.get("threads") for r in records)
    if not counts:
        return None
    text = ", ".join(map(str, counts))
    if len(counts) > 1:
        text += " (cached runs of different --threads: their fit times compare only roughly)"
    return text + (f"; not recorded for {missing} older runs" if missing else "")


def process_age() -> float:
    """Seconds since this process started (interpreter and imports included; Linux ``/proc``, else 0)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _interrupt(signum: int, frame) -> None:
    """SIGTERM / SIGINT handler: stop the run in progress (a second signal ends the process at once)."""
    signal.signal(signum, signal.SIG_DFL)
    raise Interrupted(signum)


def main(argv: list[str] | None = None, start: float | None = None) -> int:
    """Entry point (``lightning-ted frontier ...``); exit status 2 with ``error: ...`` on a refusal, 128 +
    the signal (143 for SIGTERM) with the partial report on a stop. The overhead clock starts at ``start``:
    the console script passes when its process started, so start-up counts; called in a running process (a
    notebook, a script running several configs) it starts now."""
    start = time.perf_counter() if start is None else start
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        frontier(args, argv, start)
    except FrontierRefusal as refusal:
        print(f"error: {refusal}", file=sys.stderr, flush=True)
        return 2
    except Interrupted as stop:
        where = f"the report of the runs finished so far is in {stop.report}" if stop.report else "no report written"
        print(f"stopped by {stop.name}: {where}; rerun the same command to go on", file=sys.stderr, flush=True)
        return 128 + stop.signum
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)
    return 0
