"""Writes synthetic runs as ``lightning-ted frontier`` records them for ``experiments/frontier.py``'s configs."""

from __future__ import annotations

import json
from pathlib import Path

from frontier import method_config
from frontier_report import MEASURE, fingerprints, runs_folder
from frontier_tasks import TASKS, schedule_ratio

from lightning_ted.frontier.config import method_name, method_spec


def command_record(task: str, method: str, level: float, seed: int, saved: float, test: float, val: float,
                   extra: dict | None = None, stale: bool = False) -> dict:  # fmt: skip
    """One run of the benchmark (``method`` "budget" at b = ``level``, else at target ``level``) as the command's
    runs.jsonl line, made under today's config and versions unless ``stale``."""
    spec = TASKS[task]
    budget = method == "budget"
    entry = method_spec("full") if budget else method_config(spec, method)["data"]["init_args"]["method"]
    current, full = fingerprints(spec, method)
    return dict(
        method="full" if budget else method_name(entry), seed=seed, saved=saved, metric=val / 100,
        level=level if budget else schedule_ratio(method, level, spec),
        epochs=int(round(level * spec.epochs)) if budget else spec.epochs, fit_seconds=1.0, run_seconds=1.0,
        method_config=entry, extra={"test_acc": test, "val_acc": val, **(extra or {})}, measure=MEASURE,
        config="another" if stale else (full if budget else current),
    )  # fmt: skip


def write_runs(out: Path, task: str, rows: list[tuple]) -> None:
    """``rows`` of ``(method, level, seed, saved, accuracy)`` (test and validation alike) as ``task``'s runs."""
    folder = runs_folder(out, task)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "runs.jsonl").open("w") as f:
        for method, level, seed, saved, acc in rows:
            f.write(json.dumps(command_record(task, method, level, seed, saved, acc, acc)) + "\n")
