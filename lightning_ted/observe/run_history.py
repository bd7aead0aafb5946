"""Read a run's logged metrics back: Lightning ``CSVLogger`` files or W&B run files (offline or synced).

Both readers return a list of dicts, one per logged row, with JSON-decoded values, so plots and tests
can look at the pruning metrics of any run without a W&B account or network. The W&B reader parses the
``.wandb`` transaction log (a LevelDB-style log of protobuf ``Record`` messages, 32 KiB blocks) with the
protobuf classes wandb itself ships.
"""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path
from typing import Any

_WANDB_HEADER = 7  # b":W&B" + 2-byte magic + 1-byte version
_BLOCK = 32 * 1024
_RECORD_HEADER = 7  # crc32 (4) + length (2) + type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_csv_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``CSVLogger`` ``metrics.csv`` (a file or its log folder), empty cells left out."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _wandb_payloads(data: bytes) -> list[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file: it does not start with ':W&B'")
    out, pos, partial = [], _WANDB_HEADER, b""
    while pos + _RECORD_HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _RECORD_HEADER:  # the block's tail is padding
            pos += room
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0:  # zero padding
            pos += room
            continue
        chunk = data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        pos += _RECORD_HEADER + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            partial = chunk
        elif kind == _MIDDLE:
            partial += chunk
        elif kind == _LAST:
            out.append(partial + chunk)
            partial = b""
    return out


def find_wandb_file(run_dir: str | Path) -> Path:
    """The ``run-*.wandb`` file of a run folder (``wandb/offline-run-...``), or the newest one below it."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    files = sorted(run_dir.rglob("run-*.wandb"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file under {run_dir}; pass the run's folder (wandb/offline-run-...)")
    return files[-1]


def read_wandb_run(run_dir: str | Path) -> dict[str, Any]:
    """``{"history": [rows], "metrics": [define_metric records]}`` of a W&B run file."""
    from wandb.proto import wandb_internal_pb2 as pb

    history, metrics = [], []
    for payload in _wandb_payloads(find_wandb_file(run_dir).read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {}
            for item in record.history.item:
                path = [item.key] if item.key else list(item.nested_key)
                node = row
                for part in path[:-1]:  # media such as histograms arrive as nested keys
                    node = node.setdefault(part, {})
                node[path[-1]] = json.loads(item.value_json)
            history.append(row)
        elif kind == "metric":
            m = record.metric
            metrics.append({"name": m.name or m.glob_name, "step_metric": m.step_metric})
    return {"history": history, "metrics": metrics}


def epoch_rows(rows: list[dict[str, Any]], prefix: str = "prune/") -> list[dict[str, Any]]:
    """The rows holding metrics under ``prefix``, one per epoch (the last row wins), sorted by epoch."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in rows:
        if "epoch" in row and any(k.startswith(prefix) for k in row):
            by_epoch.setdefault(int(row["epoch"]), {}).update(row)
    return [by_epoch[e] for e in sorted(by_epoch)]
