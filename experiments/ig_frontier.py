"""Issue 30's verdict: the internal-generalization schedules on the frontier, through ``lightning-ted frontier``.

For each task, six configs over the benchmark's own (``experiments/configs/frontier/<task>.yaml``), written to
``experiments/configs/frontier_ig/``: the schedule (TED's roller coaster, the budget form, the tolerance form)
x the ranking inside it (TED's score, or uniform candidates under TED's selection and weights:
``TEDVariant(ranking="random")``), so a gain of the schedule is not mistaken for a gain of the score. All six
run into one folder per task and share its plain-training runs. Seeds grow together (2, then 3, ...), so a
stopped grid leaves every config with the same seeds. The report pairs runs by seed: budget minus roller
coaster at each saving, and the tolerance form against full data and against training fewer epochs; each
config's own frontier table is kept as ``frontier_<schedule>_<ranking>.md`` in the task's folder.

    PYTHONPATH=experiments python experiments/ig_frontier.py --tasks fashion noisy_fashion --seeds 5
    PYTHONPATH=experiments python experiments/ig_frontier.py --report-only
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
from pathlib import Path

import yaml

from lightning_ted.frontier.command import main as frontier
from lightning_ted.frontier.config import load_config

HERE = Path(__file__).resolve().parent
CONFIGS, RESULTS = HERE / "configs" / "frontier", HERE / "results"
TARGETS = (0.3, 0.5)
TOLERANCE = 0.5
SCHEDULES = {
    "rollercoaster": {"class_path": "lightning_ted.RollerCoasterSchedule", "init_args": {"beta": 0.5}},
    "budget": {"class_path": "lightning_ted.research.GeneralizationBudgetSchedule", "init_args": {}},
    "tolerance": {"class_path": "lightning_ted.research.GeneralizationToleranceSchedule", "init_args": {}},
}
RANKINGS = {
    "ted": {"class_path": "lightning_ted.TED"},
    "random": {"class_path": "lightning_ted.research.TEDVariant", "init_args": {"ranking": "random"}},
}
BUDGETS = ("1.5", "0.7", "0.5", "0.3")


def write_config(task: str, schedule: str, ranking: str, folder: Path) -> Path:
    """The task's benchmark config with ``schedule`` (warm-up and anneal kept) and ``ranking``."""
    base = yaml.safe_load((CONFIGS / f"{task}.yaml").read_text())
    init = base["data"]["init_args"]
    kept = {k: v for k, v in init["schedule"].get("init_args", {}).items() if k in ("warmup_epochs", "anneal")}
    entry = copy.deepcopy(SCHEDULES[schedule])
    entry["init_args"].update(kept)
    init["schedule"], init["method"] = entry, copy.deepcopy(RANKINGS[ranking])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}_{schedule}_{ranking}.yaml"
    header = f"# written by experiments/ig_frontier.py from configs/frontier/{task}.yaml: {schedule} x {ranking}\n"
    path.write_text(header + yaml.safe_dump(base, sort_keys=False))
    return path


def levels(schedule: str) -> list[str]:
    if schedule == "tolerance":
        return ["--ratios", str(TOLERANCE)]
    return ["--targets", *map(str, TARGETS)]


def run(tasks: list[str], seeds: int, folder: Path, out: Path, threads: int, workers: int = 1) -> None:
    for n in range(2, seeds + 1):
        for task in tasks:
            for schedule in SCHEDULES:
                for ranking in RANKINGS:
                    config = write_config(task, schedule, ranking, folder)
                    args = ["--config", str(config), "--budgets", *BUDGETS, "--seeds", str(n), "--threads",
                            str(threads), "--workers", str(workers), "--out", str(out / f"frontier_ig_{task}"),
                            *levels(schedule)]  # fmt: skip
                    print("frontier", " ".join(args), flush=True)
                    code = frontier(args)
                    if code in (130, 143):  # Ctrl-C / SIGTERM: the command wrote its partial report; stop the grid
                        raise SystemExit(code)


def config_reports(tasks: list[str], seeds: int, folder: Path, out: Path) -> None:
    """Each config's own frontier table (the command's report over the shared runs), kept under its name."""
    for task in tasks:
        runs = out / f"frontier_ig_{task}"
        for schedule in SCHEDULES:
            for ranking in RANKINGS:
                config = folder / f"{task}_{schedule}_{ranking}.yaml"
                if not config.exists() or not (runs / "runs.jsonl").exists():
                    continue
                args = ["--config", str(config), "--budgets", *BUDGETS, "--seeds", str(seeds), "--out", str(runs),
                        "--report-only", *levels(schedule)]  # fmt: skip
                if frontier(args) == 0:
                    for suffix in ("md", "png"):
                        (runs / f"frontier.{suffix}").replace(runs / f"frontier_{schedule}_{ranking}.{suffix}")


def _mean_se(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) < 2:
        return f"{100 * values[0]:+.2f} (1 seed)"
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{100 * statistics.mean(values):+.2f} ± {100 * se:.2f}"


def _by_target(runs: dict[tuple[float, int], dict]) -> dict[tuple[float, int], dict]:
    """Runs keyed by ``(the target they saved, seed)``: a budget's level is its target, a roller coaster's the
    ratio ``--targets`` found for it; both save their target to within a step."""
    return {(min(TARGETS, key=lambda t: abs(t - r["saved"])), seed): r for (_, seed), r in runs.items()}


def report(tasks: list[str], folder: Path, out: Path) -> str:
    """Paired (by seed) validation differences, in points, from each task's shared ``runs.jsonl``."""
    lines = [
        "# Internal generalization on the frontier (issue 30)",
        "",
        "Regenerate: `PYTHONPATH=experiments python experiments/ig_frontier.py --tasks "
        + " ".join(tasks)
        + " --seeds 5` (`--report-only` redraws). Validation accuracy, points, paired by seed "
        "(mean ± SE). Form 1: the budget schedule minus TED's roller coaster at the same saving, with TED's score "
        "and with uniform candidates inside both. Form 2: the tolerance schedule "
        f"(tolerance {TOLERANCE}) minus full data at E, its saving, and the largest saving at which training fewer "
        "epochs stays within 0.2 points of full data.",
        "",
        "| task | ranking | saved | budget - roller coaster | seeds | tolerance: saved | tolerance - full | "
        "fewer epochs within 0.2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        path = out / f"frontier_ig_{task}" / "runs.jsonl"
        if not path.exists():
            continue
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        by_config: dict[str, dict[tuple[float, int], dict]] = {}
        for r in records:
            level = r["level"] if r["method"] != "full" else -r["epochs"]  # plain training: keyed by its epochs
            by_config.setdefault(r["config"], {})[level, r["seed"]] = r
        fp = {}
        for schedule in SCHEDULES:
            for ranking in RANKINGS:
                cfg = folder / f"{task}_{schedule}_{ranking}.yaml"
                if cfg.exists():
                    task_cfg = load_config(cfg)
                    fp[schedule, ranking] = task_cfg.fingerprint()
                    full_fp, epochs = task_cfg.full_fingerprint(), task_cfg.max_epochs
        full = by_config.get(full_fp, {})
        full_e = {seed: r["metric"] for (lvl, seed), r in full.items() if lvl == -epochs}
        fewer = "-"
        shorter = sorted({-lvl for (lvl, _) in full if -lvl < epochs}, reverse=True)  # fewest epochs saved first
        for n_epochs in shorter:  # the largest saving before the first budget that falls 0.2 points below full
            seeds = [s for (lv, s) in full if lv == -n_epochs and s in full_e]
            gap = statistics.mean(full[-n_epochs, s]["metric"] - full_e[s] for s in seeds) if seeds else -1.0
            saved = 1 - n_epochs / epochs
            if gap < -0.002:
                fewer = fewer if fewer != "-" else f"< {100 * saved:.0f}%"
                break
            fewer = f"{100 * saved:.0f}%"
        for ranking in RANKINGS:
            tol = by_config.get(fp.get(("tolerance", ranking)), {})
            tol_runs = [r for (lvl, s), r in tol.items() if s in full_e]
            tol_saved = f"{100 * statistics.mean(r['saved'] for r in tol_runs):.0f}%" if tol_runs else "-"
            tol_gain = _mean_se([r["metric"] - full_e[r["seed"]] for r in tol_runs])
            budget = _by_target(by_config.get(fp.get(("budget", ranking)), {}))
            coaster = _by_target(by_config.get(fp.get(("rollercoaster", ranking)), {}))
            for target in TARGETS:
                diffs = [budget[k]["metric"] - coaster[k]["metric"] for k in budget if k[0] == target and k in coaster]
                lines.append(f"| {task} | {ranking} | {target:.0%} | {_mean_se(diffs)} | {len(diffs)} | {tol_saved} | "
                             f"{tol_gain} | {fewer} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    (out / "frontier_ig.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["fashion", "noisy_fashion"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="runs trained at once (the command's --workers)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--configs", type=Path, default=HERE / "configs" / "frontier_ig")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not args.report_only:
        run(args.tasks, args.seeds, args.configs, args.out, args.threads, args.workers)
    config_reports(args.tasks, args.seeds, args.configs, args.out)
    print(report(args.tasks, args.configs, args.out))


if __name__ == "__main__":
    main()
