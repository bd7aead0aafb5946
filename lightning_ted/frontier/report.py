"""The frontier's outputs: ``frontier.md`` (table, verdict, overhead), ``frontier.png``, and W&B when the
config has a ``WandbLogger``."""

from __future__ import annotations

from pathlib import Path

from lightning_ted.frontier.gains import decimals


def markdown(
    rows: list[dict], head: dict, verdict: str, overhead: str | None, notes: list[str] = (), partial: str | None = None
) -> str:
    """The table of every (method, level) row with the verdict, ``notes`` (:func:`~.gains.advice`) and a
    ``partial`` line (a stopped command) above it, and timing notes and the command's overhead below."""
    d = decimals(rows)
    better = "higher" if head["mode"] == "max" else "lower"
    lines = [f"# Frontier: {head['config']}", ""]
    if partial:
        lines += [f"**Partial:** {partial}", ""]
    lines += [f"**Verdict:** {verdict}.", ""]
    for note in notes:  # "Next: ..." -> **Next:** ...
        label, _, text = note.partition(": ")
        lines += [f"**{label}:** {text}.", ""]
    lines += [
        f"Metric `{head['metric']}` ({better} is better) at the end of each run, mean ± SE over seeds. E = "
        f"{head['max_epochs']} epochs; `full b=...` trains on all data for round(b E) epochs (its LR schedule "
        "spanning the shorter run): the frontier. A method's gain is its metric minus that seed's frontier "
        "interpolated at the saving it reached (positive: better than training fewer epochs), ± the SE of the "
        "paired per-seed gains. Saved: fraction of E epochs' sample-passes not trained. Speedup: fit time of "
        "`full b=1.0` over the run's, same seed. Command: `" + head["command"] + "`.",
        "",
        f"| run | epochs | seeds | saved | {head['metric']} | gain vs frontier | fit time (s) | speedup vs full |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = f"full b={r['level']}" if r["method"] == "full" else f"{r['method']} r={r['level']}"
        gain = "frontier" if r["method"] == "full" else f"{r['gain']:+.{d}f} ± {r['gain_se']:.{d}f}"
        if r["extrapolated"]:
            gain += " (extrap.)"
        speedup = f"{r['speedup']:.2f}x"
        if r.get("speedup_noise"):
            speedup += f" (above ideal {r['speedup_ideal']:.2f}x)"
        lines.append(
            f"| {name} | {r['epochs']} | {r['seeds']} | {100 * r['saved']:.1f}% | {r['metric']:.{d}f} ± "
            f"{r['metric_se']:.{d}f} | {gain} | {r['fit_seconds']:.1f} | {speedup} |"
        )
    lines += _measures_table(rows)
    if any(r.get("speedup_noise") for r in rows):
        lines += ["", "A speedup above its ideal, 1 / (1 - saved) (all a saving of that share of sample-passes can "
                  "buy), is measurement noise: the fit times moved with other load on the machine. Time on an idle "
                  "machine, with --workers 1, before reading speedups."]  # fmt: skip
    if head.get("threads"):
        lines += ["", f"Threads per run: {head['threads']} (torch.set_num_threads; --threads)."]
    if overhead:
        lines += ["", overhead]
    return "\n".join(lines) + "\n"


def _measure_names(rows: list[dict]) -> list[str]:
    """Every ``--measure`` number any row recorded, sorted (one column each in the table and in W&B)."""
    return sorted({name for r in rows for name in r.get("measures", {})})


def _measures_table(rows: list[dict]) -> list[str]:
    """The ``--measure`` numbers per row (mean ± SE over the runs that recorded them), when any run has one."""
    names = _measure_names(rows)
    if not names:
        return []
    lines = ["", "Measures (--measure), mean ± SE over the runs that recorded them:", "",
             "| run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]  # fmt: skip
    for r in rows:
        cells = []
        for name in names:
            mean, se, n = r.get("measures", {}).get(name, (None, None, 0))
            spread = f" ± {se:.2g}" if se == se else ""  # one run: no standard error
            cells.append("—" if mean is None else f"{mean:.4g}{spread}" + (f" ({n} runs)" if n < r["seeds"] else ""))
        label = f"full b={r['level']}" if r["method"] == "full" else f"{r['method']} r={r['level']}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def plot(rows: list[dict], metric: str, path: Path) -> None:
    """Metric against saved sample-passes: the frontier as a line, each method's rows with SE bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    front = sorted((r["saved"], r["metric"], r["metric_se"]) for r in rows if r["method"] == "full")
    if front:
        xs, ys, es = zip(*front, strict=True)
        ax.errorbar(xs, ys, yerr=[e if e == e else 0 for e in es], color="black", marker="s",
                    label="full data, fewer epochs (frontier)")  # fmt: skip
    for method in sorted({r["method"] for r in rows} - {"full"}):
        pts = sorted((r["saved"], r["metric"], r["metric_se"]) for r in rows if r["method"] == method)
        xs, ys, es = zip(*pts, strict=True)
        ax.errorbar(xs, ys, yerr=[e if e == e else 0 for e in es], fmt="o", capsize=3, label=method)
    ax.set_xlabel("saved sample-passes (fraction of full training at E epochs)")
    ax.set_ylabel(metric)
    ax.set_title("pruning vs training for fewer epochs (± SE over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_wandb(init_args: dict, rows: list[dict], verdict: str, png: Path, notes: list[str] = ()) -> None:
    """One W&B run (``job_type="frontier"``) in the config's project: the table, the plot and the verdict."""
    import wandb

    keys = {"project": "project", "entity": "entity", "save_dir": "dir", "group": "group", "tags": "tags"}
    kwargs = {new: init_args[old] for old, new in keys.items() if init_args.get(old) is not None}
    if init_args.get("offline"):
        kwargs["mode"] = "offline"
    run = wandb.init(job_type="frontier", name=f"frontier-{init_args.get('name') or 'run'}", reinit=True, **kwargs)
    names = _measure_names(rows)
    columns = [c for c in rows[0] if c != "measures"]
    data = [[r[c] for c in columns] + [r.get("measures", {}).get(n, (None,))[0] for n in names] for r in rows]
    run.log({
        "frontier/table": wandb.Table(columns=columns + names, data=data),
        "frontier/plot": wandb.Image(str(png)),
    })  # fmt: skip
    run.summary["frontier/verdict"] = verdict
    if notes:
        run.summary["frontier/notes"] = " ".join(notes)
    run.finish()
