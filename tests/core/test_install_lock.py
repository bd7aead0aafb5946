"""``requirements/lock.txt`` pins the whole test environment, and ``tools/lock.py`` reports drift from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lock import changes, parse  # tools/lock.py (tools/ is on pytest's pythonpath)

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_dependency_of_the_package_and_its_dev_extra_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    pinned = {n.replace("_", "-") for n in parse((ROOT / "requirements" / "lock.txt").read_text())}
    assert wanted - pinned == set(), "pin them with `make lock` after `make test` passed"
    assert "lightning-ted" not in pinned  # the package itself is installed editable, never from the index


def test_drift_names_each_moved_added_and_dropped_pin():
    locked = parse("# header\ntorch==2.14.1\ntransformers==5.25.0\nsix==1.16.0\n")
    now = parse("torch==2.14.1\ntransformers==5.26.0\nwandb==0.31.0\n")
    moved = [("six", "1.16.0", "-"), ("transformers", "5.25.0", "5.26.0"), ("wandb", "-", "0.31.0")]
    assert changes(locked, now) == moved
    assert changes(locked, locked) == []
