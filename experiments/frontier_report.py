"""The frontier benchmark's tables, read from the runs ``lightning-ted frontier`` recorded in each task's
``results/frontier_<task>/runs.jsonl``: per-task paired gains on test and validation, the convergence check,
the saved fraction at full accuracy minus 0.2, the plot, and the cross-task summary. Used by ``frontier.py``."""

from __future__ import annotations

import functools
import json
import math
import statistics
from pathlib import Path

import torch
from frontier_modules import task_config
from frontier_tasks import (
    METHOD_ORDER,
    MODEL_LABELS,
    REGENERATE,
    TARGETS,
    TASKS,
    TED_VARIANTS,
    Result,
    TaskSpec,
    schedule_ratio,
)

from lightning_ted.frontier.gains import frontier_at, mean_se  # (the frontier command's arithmetic)

COMMAND = "PYTHONPATH=experiments python experiments/frontier.py"
LR_SHAPES = {"cifar10_gpu": "linear warm-up (20%) and linear decay"}  # else a cosine decay
MEASURE = "frontier_modules.measure"  # the --measure every benchmark run records: test and validation accuracy


def runs_folder(out: Path, task: str) -> Path:
    """Where the command writes ``task``'s runs (``runs.jsonl``) and each method config's own table."""
    return out / f"frontier_{task}"


def benchmark_method(record: dict) -> str:
    """The benchmark's name of a run's method: ``budget`` for plain training, a ``TED_VARIANTS`` name for a
    ``TEDVariant`` with that variant's arguments, else the method's registry name."""
    if record["method"] == "full":
        return "budget"
    entry = record.get("method_config") or {}
    if isinstance(entry, dict) and str(entry.get("class_path", "")).endswith("TEDVariant"):
        args = entry.get("init_args") or {}
        return next((name for name, given in TED_VARIANTS.items() if given == args), "ted_variant?")
    return record["method"]


@functools.cache
def fingerprints(spec: TaskSpec, method: str, accelerator: str | None = None) -> tuple[str, str]:
    """(fingerprint of the config ``frontier.py`` writes for ``spec`` and ``method`` on ``accelerator``, of its
    plain-training runs) under this code and these library versions: a recorded run with another is stale."""
    from frontier import method_config  # deferred: frontier.py imports this module

    config = task_config(spec, method_config(spec, method if method != "budget" else "ted", accelerator))
    return config.fingerprint(), config.full_fingerprint()


def _targets(method: str, ratio: float, spec: TaskSpec, targets) -> list[float]:
    """The benchmark targets whose schedule ratio for ``method`` is ``ratio``: more than one where a capped ratio
    serves two (InfoBatch's 0.9 at 50% and 70% on a short run); none for a ratio of another run."""
    found = []
    for target in targets:
        try:
            if math.isclose(schedule_ratio(method, target, spec), ratio, abs_tol=1e-9):
                found.append(target)
        except ValueError:  # a target this task's epochs cannot reach (fashion60k's 70%)
            continue
    return found


def task_results(out: Path, spec: TaskSpec, accelerator: str | None = None, targets=TARGETS) -> list[Result]:
    """Each run of ``spec`` the command recorded with the benchmark's measure, as the tables' :class:`Result`:
    budget points by b, methods by their target (a run whose ratio two targets share counts for both). Per
    (method, level, seed) the last run made under today's config and versions, else the last one before, marked
    ``stale`` (the tables mark it; the grid reruns it). Runs at a ratio no target in ``targets`` gives are named
    in a note, not tabled."""
    path = runs_folder(out, spec.name) / "runs.jsonl"
    done: dict[tuple, Result] = {}
    unmatched = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        if not line.strip():
            continue
        record = json.loads(line)
        extra = record.get("extra") or {}
        method = benchmark_method(record)
        if "test_acc" not in extra or method not in (*METHOD_ORDER, "budget"):
            continue  # made without --measure frontier_modules.measure, or another method's run
        levels = [record["level"]] if method == "budget" else _targets(method, record["level"], spec, targets)
        unmatched += not levels
        fingerprint, full = fingerprints(spec, method, accelerator)
        for level in levels:
            result = Result(
                spec.name, method, level, record["seed"], record["epochs"],
                0.0 if method == "budget" else record["level"], record["saved"], extra["test_acc"], extra["val_acc"],
                record["fit_seconds"], extra={k: v for k, v in extra.items() if k == "flipped_share"},
                stale=record.get("config") != (full if method == "budget" else fingerprint),
            )  # fmt: skip
            key = (method, level if method != "budget" else record["epochs"], record["seed"])
            if not result.stale or key not in done or done[key].stale:
                done[key] = result
    if unmatched:
        print(f"note: {unmatched} runs of {spec.name} are at ratios no target of {list(targets)} gives (another "
              "calibration or --targets): left out of the tables", flush=True)  # fmt: skip
    return list(done.values())


def summarise(results: list[Result]) -> tuple[list[dict], dict]:
    """Rows per (method, level) with paired gains over the per-seed frontier; the convergence check."""
    budget = [r for r in results if r.method == "budget"]
    per_seed: dict[int, dict[str, list]] = {}
    for r in budget:
        per_seed.setdefault(r.seed, {"test": [], "val": []})
        per_seed[r.seed]["test"].append((r.saved, r.test_acc))
        per_seed[r.seed]["val"].append((r.saved, r.val_acc))
    full = {r.seed: r for r in budget if r.level == 1.0}
    rows = []
    groups: dict[tuple[str, float], list[Result]] = {}
    for r in results:
        groups.setdefault((r.method, r.level), []).append(r)
    for (method, level), runs in groups.items():
        paired = [r for r in runs if r.seed in per_seed and len(per_seed[r.seed]["test"]) >= 2]
        gain_t = [r.test_acc - frontier_at(per_seed[r.seed]["test"], r.saved) for r in paired]
        gain_v = [r.val_acc - frontier_at(per_seed[r.seed]["val"], r.saved) for r in paired]
        speed = [full[r.seed].seconds / r.seconds for r in runs if r.seed in full]
        test, test_se = mean_se([r.test_acc for r in runs])
        g, g_se = mean_se(gain_t)
        gv, gv_se = mean_se(gain_v)
        max_budget_saved = max((x for pts in per_seed.values() for x, _ in pts["test"]), default=0.0)
        saved = statistics.fmean(r.saved for r in runs)
        flips = [r.extra["flipped_share"] for r in runs if "flipped_share" in r.extra]
        rows.append(
            dict(
                method="full" if method == "budget" else method,
                budget=level if method == "budget" else "",
                target=level if method != "budget" else "",
                epochs=runs[0].epochs,
                ratio=round(runs[0].ratio, 4),
                seeds=len(runs),
                saved=saved,
                test_acc=test,
                test_se=test_se,
                gain=g if method != "budget" else 0.0,
                gain_se=g_se if method != "budget" else 0.0,
                val_acc=statistics.fmean(r.val_acc for r in runs),
                val_gain=gv if method != "budget" else 0.0,
                val_gain_se=gv_se if method != "budget" else 0.0,
                seconds=statistics.fmean(r.seconds for r in runs),
                speedup=statistics.fmean(speed) if speed else float("nan"),
                extrapolated=method != "budget" and saved > max_budget_saved + 1e-9,
                flipped_share=mean_se(flips)[0],
                flipped_runs=len(flips),
                stale=sum(r.stale for r in runs),  # runs made under another config or versions (task_results)
            )
        )
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    rows.sort(key=lambda r: (r["method"] != "full", r["target"] or 0, order.get(r["method"], 99), -r["saved"]))
    conv = {}
    longer = {r.seed: r for r in budget if r.level == 1.5}
    both = sorted(set(full) & set(longer))
    if both:
        diff, diff_se = mean_se([longer[s].test_acc - full[s].test_acc for s in both])
        conv = dict(
            full_E=statistics.fmean(full[s].test_acc for s in both),
            full_15E=statistics.fmean(longer[s].test_acc for s in both),
            diff=diff,
            diff_se=diff_se,
            val_diff=statistics.fmean(longer[s].val_acc - full[s].val_acc for s in both),
            seeds=len(both),
        )
    return rows, conv


def saved_at_tolerance(rows: list[dict], method: str, full_acc: float, key: str, tol: float = 0.2) -> float:
    """Largest saved fraction at which ``method``'s accuracy curve (its points joined to full at 0 saved,
    linearly) stays at or above ``full_acc - tol``; 0 when none does."""
    pts = [(0.0, full_acc)] + sorted(
        (r["saved"], r[key]) for r in rows if r["method"] == method and (method != "full" or r["saved"] >= 0)
    )
    pts = sorted(set(pts))
    best, floor = 0.0, full_acc - tol
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:], strict=True):
        if y0 < floor:
            break
        best = x0
        if y1 >= floor:
            best = x1
        else:
            best = x0 + (x1 - x0) * (y0 - floor) / (y0 - y1)
            break
    return best


def _beats(rows: list[dict], key: str, se: str) -> str:
    """Targets at which the gain exceeds two standard errors (``no`` if none)."""
    hits = [f"{r['target']:.1f}" for r in rows if r[se] == r[se] and r[key] > 2 * r[se]]
    return "at " + ", ".join(hits) if hits else "no"


def full_at_e(rows: list[dict]) -> dict | None:
    """The row of plain training for the whole budget E (b = 1), the accuracy every tolerance is read from."""
    return next((r for r in rows if r["method"] == "full" and r["budget"] == 1.0), None)


def _dagger(row: dict) -> str:
    return f" †{row['stale']}" if row.get("stale") else ""


def _stale_note(rows: list[dict]) -> list[str]:
    """The footnote that names how many runs of the table are stale, and how to refresh them."""
    stale = sum(r.get("stale", 0) for r in rows)
    if not stale:
        return []
    total = sum(r["seeds"] for r in rows)
    return [
        "",
        f"† n: n of the row's runs are stale ({stale} of {total} in this table): made under another "
        "config, lightning-ted version or library versions than this code runs (their config fingerprint in "
        "runs.jsonl differs). The grid reruns them (`experiments/frontier.py` without `--report-only`).",
    ]


def markdown(spec: TaskSpec, rows: list[dict], conv: dict, wall: float | None) -> str:
    full_row = full_at_e(rows)
    lines = [
        f"# Frontier: {spec.name}",
        "",
        f"{spec.n_train} training samples ({spec.n_val} validation carved from train, {spec.n_test} test), "
        f"{MODEL_LABELS.get(spec.name, 'SmallCNN' if spec.data == 'fashion' else f'CifarCNN{spec.width}')}, "
        f"E = {spec.epochs} epochs, batch "
        f"{spec.batch_size}, {'AdamW' if spec.data == 'sst2' else 'SGD'} lr {spec.lr} "
        f"{LR_SHAPES.get(spec.name, 'cosine')} over each run's own epochs"
        + (f", {int(100 * spec.noise)}% of training labels flipped" if spec.noise else "")
        + f"; torch {torch.__version__}. Regenerate: "
        + f"`{REGENERATE.get(spec.name, f'{COMMAND} --tasks {spec.name}')}`.",
        "",
    ]
    if conv:
        lines += [
            f"**Convergence check** ({conv['seeds']} seeds): full at E = {conv['full_E']:.2f}, full at 1.5 E = "
            f"{conv['full_15E']:.2f} (test; 1.5E - E = {conv['diff']:+.2f} ± {conv['diff_se']:.2f}, validation "
            f"{conv['val_diff']:+.2f}); " + ("within" if abs(conv["diff"]) <= 0.3 else "NOT within") + " 0.3 points.",
            "",
        ]
    lines += [
        "| method | budget b / target | seeds | saved | test acc (%) | gain vs frontier (test) | val acc (%) "
        "| gain vs frontier (val) | time (s) | speedup vs full |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        level = f"b={r['budget']}" if r["method"] == "full" else f"{r['target']:.1f} (r={r['ratio']:.2f})"
        gain = "frontier" if r["method"] == "full" else f"{r['gain']:+.2f} ± {r['gain_se']:.2f}"
        vgain = "frontier" if r["method"] == "full" else f"{r['val_gain']:+.2f} ± {r['val_gain_se']:.2f}"
        if r["extrapolated"]:
            gain += " (extrap.)"
        lines.append(
            f"| {r['method']}{_dagger(r)} | {level} | {r['seeds']} | {100 * r['saved']:.1f}% | {r['test_acc']:.2f} ± "
            f"{r['test_se']:.2f} | {gain} | {r['val_acc']:.2f} | {vgain} | {r['seconds']:.1f} | {r['speedup']:.2f}x |"
        )
    lines += _stale_note(rows)
    flips = [r for r in rows if r.get("flipped_runs")]
    if flips:
        lines += ["", f"Flipped labels among the pruned sample-passes ({int(100 * spec.noise)}% of the training labels "
                  "are flipped: a larger share means the method prunes mislabelled samples more than their share):",
                  "", "| method | target | saved | runs measured | flipped share of pruned passes | test acc (%) |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [
            f"| {r['method']} | {r['target']:.1f} | {100 * r['saved']:.1f}% | {r['flipped_runs']} | "
            f"{100 * r['flipped_share']:.1f}% | {r['test_acc']:.2f} |"
            for r in flips
        ]
    if full_row is not None:
        lines += ["", "Saved fraction at full accuracy minus 0.2 points (val decides; test shown):", ""]
        lines += ["| method | saved at full − 0.2 (val) | saved at full − 0.2 (test) | beats frontier by > 2 SE (val) "
                  "| beats frontier by > 2 SE (test) |", "|---|---:|---:|---|---|"]  # fmt: skip
        for m in METHOD_ORDER:
            mine = [r for r in rows if r["method"] == m and (m == "full" or r["target"] != "")]
            if not mine:
                continue
            sv = saved_at_tolerance(rows, m, full_row["val_acc"], "val_acc")
            st = saved_at_tolerance(rows, m, full_row["test_acc"], "test_acc")
            if m == "full":
                lines.append(f"| full (frontier) | {100 * sv:.1f}% | {100 * st:.1f}% | — | — |")
                continue

            lines.append(
                f"| {m} | {100 * sv:.1f}% | {100 * st:.1f}% | {_beats(mine, 'val_gain', 'val_gain_se')} "
                f"| {_beats(mine, 'gain', 'gain_se')} |"
            )
    if wall is not None:
        lines += ["", f"Grid wall time for this invocation: {wall / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def plot(spec: TaskSpec, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    front = sorted((1 - r["saved"], r["test_acc"], r["test_se"]) for r in rows if r["method"] == "full")
    if front:
        xs, ys, es = zip(*front, strict=True)
        yerr = [0 if e != e else e for e in es]
        ax.errorbar(xs, ys, yerr=yerr, color="black", marker="s", label="full, fewer epochs")
    floor = min((y for _, y, _ in front), default=0.0) - 4.0  # a diverged run would squash the frontier
    for m in METHOD_ORDER[1:]:
        pts = sorted((1 - r["saved"], r["test_acc"], r["test_se"]) for r in rows if r["method"] == m)
        if pts:
            xs, ys, es = zip(*pts, strict=True)
            shown = [max(y, floor + 0.5) for y in ys]
            line = ax.errorbar(xs, shown, yerr=[0 if e != e else e for e in es], fmt="o", capsize=3, label=m)
            for x, y in zip(xs, ys, strict=True):
                if y < floor + 0.5:  # off the chart: a down arrow at the bottom with the real value
                    ax.annotate(
                        f"{y:.1f}",
                        (x, floor + 0.5),
                        color=line[0].get_color(),
                        fontsize=8,
                        xytext=(4, 2),
                        textcoords="offset points",
                    )
                    ax.plot([x], [floor + 0.5], marker="v", color=line[0].get_color())
    if front:
        ax.set_ylim(bottom=floor)
    ax.set_xlabel("sample-passes (fraction of full training at E epochs)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{spec.name}: accuracy vs sample-passes (± SE over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(spec: TaskSpec, results: list[Result], out: Path, wall: float | None = None) -> str:
    import csv

    rows, conv = summarise(results)
    text = markdown(spec, rows, conv, wall)
    fit = sum(r.seconds for r in results) / 60
    text += (
        f"\nFit time summed over the {len(results)} runs: {fit:.1f} min (the grid runs 2 at a time, so about "
        f"{fit / 2:.0f} min of wall time on 2 free cores; wall times and speedups are noisy on shared cores).\n"
    )
    (out / f"frontier_{spec.name}.md").write_text(text)
    with open(out / f"frontier_{spec.name}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(spec, rows, out / f"frontier_{spec.name}.png")
    return text


SUMMARY_METHODS = ("random", "infobatch", "seta", "ted", "ted_unnorm")
SUMMARY_TASKS = ("fashion", "noisy_fashion", "cifar10_noaug", "sst2", "cifar10")


def summary(out: Path, tasks=SUMMARY_TASKS, methods=SUMMARY_METHODS) -> str:
    """One table per target across tasks: each method's test gain over the frontier ± SE (saved, seeds);
    bold where it beats the frontier by more than 2 SE on test and on validation. From the caches."""
    per_task = {}
    for task in tasks:
        results = task_results(out, TASKS[task])
        if results:
            per_task[task] = summarise(results)
    lines = [
        "# Frontier summary: gain over training for fewer epochs, per task",
        "",
        "Each cell: test accuracy minus the frontier at the saving reached, mean ± SE of the paired difference "
        "(saving reached, seeds); **bold**: above the frontier by more than 2 SE on both test and validation. "
        "Full data at E vs 1.5 E is the convergence check (test). Regenerate: "
        f"`{COMMAND} --report-only --tasks " + " ".join(per_task) + "`.",
    ]
    for target in (0.3, 0.5, 0.7):
        lines += ["", f"**Target {int(100 * target)}% saved**", ""]
        lines += ["| task | full at E / 1.5 E | " + " | ".join(methods) + " |", "|---|---|" + "---:|" * len(methods)]
        for task, (rows, conv) in per_task.items():
            cells = []
            for m in methods:
                r = next((r for r in rows if r["method"] == m and r["target"] == target), None)
                if r is None:
                    cells.append("—")
                    continue
                text = f"{r['gain']:+.2f} ± {r['gain_se']:.2f} ({100 * r['saved']:.0f}%, {r['seeds']}){_dagger(r)}"
                wins = r["gain"] > 2 * r["gain_se"] and r["val_gain"] > 2 * r["val_gain_se"]
                cells.append(f"**{text}**" if wins else text)
            check = f"{conv['full_E']:.2f} / {conv['full_15E']:.2f}" if conv else "—"
            lines.append(f"| {task} | {check} | " + " | ".join(cells) + " |")
    lines += _stale_note([r for rows, _ in per_task.values() for r in rows if r["method"] in ("full", *methods)])
    lines += ["", "**Saved fraction at full accuracy minus 0.2 points**, validation (test), each method's curve "
              "joined to full data at 0 saved; `full` is training for fewer epochs:", ""]  # fmt: skip
    lines += ["| task | full | " + " | ".join(methods) + " |", "|---|---:|" + "---:|" * len(methods)]
    for task, (rows, _) in per_task.items():
        full = full_at_e(rows)
        if full is None:
            continue
        cells = [
            f"{100 * saved_at_tolerance(rows, m, full['val_acc'], 'val_acc'):.0f}% "
            f"({100 * saved_at_tolerance(rows, m, full['test_acc'], 'test_acc'):.0f}%)"
            for m in ("full", *methods)
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "frontier_summary.md").write_text(text)
    return text
