"""What a benchmark run's number depends on beyond its task: the resolved method config, this package's
version and the versions of the libraries that train it. Caches key their runs on :func:`run_identity`, so
a rerun under a changed default or a new release is a new run, and a report can mark cached rows that no
longer match (``stale``) instead of quoting them as today's."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lightning_ted.frontier.versions import library_versions

__all__ = ["library_versions", "run_identity"]


def run_identity(task: str, config: dict[str, Any], versions: dict[str, str] | None = None) -> str:
    """Hash of a run's task fingerprint, resolved config (method, schedule, budget) and versions."""
    payload = {"task": task, "config": config, "versions": versions or library_versions()}
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()[:12]
