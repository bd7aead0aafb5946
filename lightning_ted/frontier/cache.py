"""``runs.jsonl``: one line per finished run, so an interrupted command resumes and ``--report-only`` redraws."""

from __future__ import annotations

import json
from pathlib import Path

from lightning_ted.frontier.plan import Run


def run_key(record: dict) -> str:
    return Run(record["method"], record["level"], record["seed"], record["epochs"]).key


def read_runs(path: Path, fingerprint: str, full_fingerprint: str | None = None) -> tuple[dict[str, dict], int]:
    """Finished runs of this config by key (its plain-training runs under ``full_fingerprint``, which configs
    differing only in method and schedule share), and how many lines belong to another config (ignored)."""
    done, other = {}, 0
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            full = record.get("method") == "full" and full_fingerprint is not None
            if record.get("config") == (full_fingerprint if full else fingerprint):
                done[run_key(record)] = record
            else:
                other += 1
    return done, other


def append_run(path: Path, record: dict) -> None:
    """Append one finished run (a whole line per write, so a kill leaves the file readable)."""
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
