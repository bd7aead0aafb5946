"""Tables and figure of ``score_validity.py`` from its JSONL cache (``--report-only`` calls this alone)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import torch

from lightning_ted.frontier.versions import library_versions

#: rules whose score sum is another rule's (same state): left out of the mask table.
SAME_SUMS = ("random", "infobatch", "ted_top", "ted_gated")
METRICS = (("val_loss", "Δ val loss", 4), ("train_loss", "Δ train loss", 4), ("val_acc", "Δ val acc", 2))


def read_cache(path: Path, task=None) -> list[dict]:
    """The cached records (with ``task``: only its rules' runs, so a rule measured once and then dropped from
    the task's list is not reported from fewer seeds)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if task is None or task.rules is None:
        return rows
    return [r for r in rows if r.get("kind") == "mask" or r["rule"] in task.rules]


def append(path: Path, rec: dict) -> None:
    """Append one record, stamped with the lightning-ted and library versions that made it."""
    with path.open("a") as f:
        f.write(json.dumps({**rec, "versions": library_versions()}) + "\n")


def stale_note(rows: list[dict]) -> list[str]:
    """A line naming how many records were made under other versions than this code runs (or before records
    carried them): the tables still show them, so the reader knows which numbers are not today's."""
    today = library_versions()
    stale = sum(r.get("versions") != today for r in rows)
    if not stale:
        return []
    return [f"**{stale} of {len(rows)} records are stale**: made under other lightning-ted or library versions "
            f"than {today}, or before records carried them; delete the cache to measure them again.", ""]  # fmt: skip


def _mean_se(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return statistics.fmean(values), se


def _fmt(m: float, se: float, digits: int) -> str:
    return f"{m:+.{digits}f} ± {se:.{digits}f}"


def deltas(rows: list[dict], phase: int, frac: float, kind: str) -> dict[str, dict[int, dict[str, float]]]:
    """rule -> seed -> metric -> change against full data at the same epochs. Only seeds whose random drop
    set of that size was measured count (it runs last, so an interrupted seed is left out whole)."""
    complete = {r["seed"] for r in rows if r.get("rule") == "random" and r["phase"] == phase and r["frac"] == frac}
    out: dict[str, dict[int, dict[str, float]]] = {}
    for r in rows:
        if r.get("kind") == kind and r["phase"] == phase and r["frac"] == frac and r["seed"] in complete:
            out.setdefault(r["rule"], {})[r["seed"]] = {m: r[m] - r[f"full_{m}"] for m, _, _ in METRICS}
    return out


def phase_table(rows: list[dict], phase: int, frac: float, kind: str) -> tuple[list[str], dict[str, float]]:
    """Markdown rows for one (phase, fraction, kind), sorted by Δ val loss; and the mean Δ val loss per rule."""
    d = deltas(rows, phase, frac, kind)
    rand = deltas(rows, phase, frac, "lowest").get("random", {})
    means: dict[str, float] = {}
    lines = []
    for rule, per_seed in d.items():
        seeds = sorted(per_seed)
        cells = []
        for m, _, digits in METRICS:
            mean, se = _mean_se([per_seed[s][m] for s in seeds])
            cells.append(_fmt(mean, se, digits))
            if m == "val_loss":
                means[rule] = mean
        paired = [per_seed[s]["val_loss"] - rand[s]["val_loss"] for s in seeds if s in rand]
        pm, pse = _mean_se(paired)
        rm = statistics.fmean(rand[s]["val_loss"] for s in seeds if s in rand) if paired else math.nan
        ratio = means[rule] / rm if rm and not math.isnan(rm) else math.nan
        lines.append(
            (means[rule], f"| {rule} | {' | '.join(cells)} | {_fmt(pm, pse, 4)} | {ratio:.2f} | {len(seeds)} |")
        )
    lines.sort(key=lambda t: t[0])
    return [text for _, text in lines], means


def mask_table(rows: list[dict]) -> list[str]:
    masks = [r for r in rows if r.get("kind") == "mask"]
    if len(masks) < 3:
        return []
    out = [
        f"Random 30% drop masks at epoch {masks[0]['phase']} (seed {masks[0]['seed']}, {len(masks)} masks): "
        "correlation of the measured cost with the sum of each rule's scores over the mask (Pearson r; Spearman ρ).",
        "",
        "| rule | r (val loss) | ρ (val loss) | r (train loss) | ρ (train loss) |",
        "|---|---:|---:|---:|---:|",
    ]
    cost_v = torch.tensor([r["cost_val_loss"] for r in masks], dtype=torch.float64)
    cost_t = torch.tensor([r["cost_train_loss"] for r in masks], dtype=torch.float64)
    res = []
    for rule in masks[0]["sums"]:
        if rule in SAME_SUMS:
            continue
        s = torch.tensor([r["sums"][rule] for r in masks], dtype=torch.float64)
        cells = [f(s, c) for c in (cost_v, cost_t) for f in (_pearson, _spearman)]
        res.append((-abs(cells[0]) if not math.isnan(cells[0]) else 0.0, rule, cells))
    for _, rule, c in sorted(res):
        out.append(f"| {rule} | {c[0]:+.3f} | {c[1]:+.3f} | {c[2]:+.3f} | {c[3]:+.3f} |")
    sd = cost_v.std().item()
    out += ["", f"Mask costs (val loss): mean {cost_v.mean():+.5f}, sd {sd:.5f}."]
    return out


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return _pearson(a.argsort().argsort().double(), b.argsort().argsort().double())


def _stats(rows: list[dict], phase: int, rule: str) -> tuple[float, float, int]:
    """Mean, SE and seed count of a rule's Δ val loss (lowest 30%) at ``phase``."""
    per_seed = deltas(rows, phase, 0.3, "lowest").get(rule, {})
    return (*_mean_se([v["val_loss"] for v in per_seed.values()]), len(per_seed))


def targets(rows: list[dict], phases: tuple[int, ...], rules: tuple[str, ...] = ("ted", "ted_grad_norm")) -> list[str]:
    """The issue's mechanism target per phase, for TED's default (``ted``) and the candidate reading
    (``ted_grad_norm``): its lowest 30% costs no more than the last-loss rule's and at most half of a random
    set's. Each test is read on the paired per-seed difference: "yes" at a mean <= 0, "level" within 2 SE
    of 0, else "no". Half of a cost is defined only for a positive cost: where removing a random 30% lowered
    the validation loss, the second test reads n/a."""
    out = [
        "| phase | rule | its cost | loss | random | ≤ loss (paired) | ≤ random / 2 (paired) | cheapest rule |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for p in phases:
        d = {
            rule: {s: v["val_loss"] for s, v in per_seed.items()}
            for rule, per_seed in deltas(rows, p, 0.3, "lowest").items()
        }
        if not {"loss", "random"} <= d.keys():
            continue
        lo, ra = d["loss"], d["random"]
        best = min((statistics.fmean(v.values()), k) for k, v in d.items())
        for rule in (r for r in rules if r in d):
            t = d[rule]
            vs_loss = _verdict([t[s] - lo[s] for s in t if s in lo])
            half = (
                "n/a (random's cost ≤ 0)"
                if statistics.fmean(ra.values()) <= 0
                else _verdict([t[s] - ra[s] / 2 for s in t if s in ra])
            )
            out.append(
                f"| {p} | {rule} | {_fmt(*_mean_se(list(t.values())), 4)} | {_fmt(*_mean_se(list(lo.values())), 4)} | "
                f"{_fmt(*_mean_se(list(ra.values())), 4)} | {vs_loss} | {half} | {best[1]} ({best[0]:+.4f}) |"
            )
    return out


def _verdict(diffs: list[float]) -> str:
    """ "yes" / "level" / "no" for a paired difference that should be <= 0, with its mean ± SE."""
    m, se = _mean_se(diffs)
    word = "yes" if m <= 0 else ("level" if not math.isnan(se) and m <= 2 * se else "no")
    return f"{word} ({_fmt(m, se, 4)})"


def summary(tasks_rows: list[tuple[object, list[dict]]]) -> str:
    """Which rule's lowest 30% costs least, over every task and phase: Δ val loss minus random's (paired).
    Rules are sorted by their mean rank inside each column (1: cheapest), which a noisy column cannot swing
    the way it swings a mean of raw differences; each row also counts the columns where the rule was cheaper
    than random, and cheaper by more than 2 SE."""
    cells: dict[str, dict[str, str]] = {}
    stats: dict[str, dict[str, tuple[float, float]]] = {}
    cols = []
    for task, rows in tasks_rows:
        for p in task.phases:
            d = deltas(rows, p, 0.3, "lowest")
            rand = d.get("random", {})
            if not rand:
                continue
            col = f"{task.name} e{p}"
            cols.append(col)
            for rule, per_seed in d.items():
                m, se = _mean_se([per_seed[s]["val_loss"] - rand[s]["val_loss"] for s in per_seed if s in rand])
                cells.setdefault(rule, {})[col] = _fmt(m, se, 4)
                stats.setdefault(rule, {})[col] = (m, se)
    ranks: dict[str, list[float]] = {r: [] for r in stats}
    for col in cols:
        present = sorted((v[col][0], r) for r, v in stats.items() if col in v)
        for i, (_, r) in enumerate(present):
            ranks[r].append((i + 1) / len(present))  # 1/n .. 1: comparable across columns of different sizes
    order = sorted(stats, key=lambda r: statistics.fmean(ranks[r]))
    lines = [
        "# Score validity: every task and phase",
        "",
        "Δ validation loss of removing each rule's lowest 30% for H epochs, minus that of removing a random 30%",
        "(paired seeds, mean ± SE; negative: cheaper than random). Rules sorted by their mean rank (cheapest = 1,",
        "scaled by the rules in each column); `< random`: columns where the rule cost less than random (by > 2 SE).",
        "",
        f"| rule | mean rank | < random (> 2 SE) | mean | {' | '.join(cols)} |",
        "|---|---:|---:|---:|" + "---:|" * len(cols),
    ]
    for r in order:
        v = stats[r].values()
        below = sum(m < 0 for m, _ in v)
        sure = sum(m < -2 * se for m, se in v if not math.isnan(se))
        row = " | ".join(cells[r].get(c, "") for c in cols)
        mean = statistics.fmean(m for m, _ in v)
        lines.append(f"| {r} | {statistics.fmean(ranks[r]):.2f} | {below} of {len(v)} ({sure}) | {mean:+.4f} | {row} |")
    return "\n".join(lines) + "\n"


OPTIMIZERS = {"sgd": "SGD (Nesterov 0.9, wd 5e-4)", "adamw": "AdamW (wd 1e-4)"}
MODELS = {  # the frontier tasks' nets (frontier_tasks.py)
    "cifar10_noaug": "CifarCNN(8, 16, 32, 64) without augmentation",
    "sst2": "all-MiniLM-L6-v2's top 2 layers and a linear head on cached states of its frozen bottom 4",
}


def report(task, rows: list[dict], out: Path) -> str:
    head = (
        "| rule | Δ val loss | Δ train loss | Δ val acc | Δ val loss vs random (paired) | ÷ random | seeds |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"# Score validity: {task.name}",
        "",
        f"{task.dataset} {task.n_train} train / {task.n_val} validation, {MODELS.get(task.name, task.model.upper())}, "
        f"{OPTIMIZERS[task.optimizer]} lr {task.lr} (cosine over {task.total_epochs} epochs), batch {task.batch_size}. "
        "From the "
        f"full-data checkpoint at each phase, each rule's drop set is removed for H = {task.horizon} epochs "
        "(same order and LR); changes against the same epochs on full data, mean ± SE over paired seeds. "
        "`python experiments/score_validity.py --report-only` regenerates this file.",
        "",
    ]
    lines += stale_note(rows)
    lines += ["## Targets (lowest 30%, Δ val loss)", ""] + targets(rows, task.phases) + [""]
    for p in task.phases:
        for frac, kind in ((0.3, "lowest"), (0.5, "lowest"), (0.3, "own")):
            body, _ = phase_table(rows, p, frac, kind)
            if body:
                what = (
                    f"lowest {int(frac * 100)}% removed"
                    if kind == "lowest"
                    else "own selection at ratio 0.3 (its weights)"
                )
                lines += [f"## Epoch {p}: {what}", "", head, *body, ""]
    lines += mask_table(rows)
    text = "\n".join(lines) + "\n"
    (out / f"score_validity_{task.name}.md").write_text(text)
    _figure(task, rows, out / f"score_validity_{task.name}.png")
    return text


def _figure(task, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = [phase_table(rows, p, 0.3, "lowest")[1] for p in task.phases]
    rules = sorted({r for t in tables for r in t}, key=lambda r: tables[1].get(r, tables[0].get(r, 0.0)))
    if not rules:
        return
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(task.phases)
    for i, (p, t) in enumerate(zip(task.phases, tables, strict=True)):
        ax.bar(
            [j + i * width for j in range(len(rules))], [t.get(r, math.nan) for r in rules], width, label=f"epoch {p}"
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rules))], rules, rotation=60, ha="right")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel(f"Δ val loss after {task.horizon} epochs")
    ax.set_title(f"{task.name}: cost of removing each rule's lowest 30%")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
