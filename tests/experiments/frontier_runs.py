"""Writes a synthetic frontier cache, the runs ``experiments/frontier.py`` would have appended."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import frontier


def write_runs(out: Path, task: str, rows: list[tuple]) -> None:
    """``rows`` of ``(method, level, seed, saved, accuracy)`` (test and validation alike) as ``task``'s cache."""
    spec = frontier.TASKS[task]
    with frontier.cache_path(out, task).open("w") as f:
        for method, level, seed, saved, acc in rows:
            r = frontier.Result(task, method, level, seed, 4, 0.0, saved, acc, acc, 1.0, spec.fingerprint())
            r = frontier.stamped(r, frontier.Job(task, method, level, seed), spec)  # made under today's code
            f.write(json.dumps(asdict(r)) + "\n")
