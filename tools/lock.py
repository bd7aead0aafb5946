"""The test environment's lock file: write it from a venv, or compare a venv with it.

    python3 tools/lock.py write .venv/bin/python requirements/lock.txt
    python3 tools/lock.py compare .venv-latest/bin/python requirements/lock.txt

``write`` pins every installed distribution but this package (``pip freeze``); ``make test`` installs with
the file as pip constraints. ``compare`` prints the pins the other venv moved, added or dropped, so a
failure under the newest releases (``make drift``) names the versions that changed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEADER = (
    "# The versions `make test` and `make demo` install (as pip constraints), so a fresh clone tests what was tested.\n"
    "# Written by `make lock` from a venv in which the whole suite passed; `make drift` tries the newest releases.\n"
)
OWN = {"lightning-ted", "lightning_ted"}


def installed(python: str) -> dict[str, str]:
    """``{name: version}`` of the venv's distributions (lower-case names), this package left out."""
    out = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable"], check=True, capture_output=True, text=True
    ).stdout
    return parse(out)


def parse(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            if name.lower() not in OWN:
                pins[name.lower()] = version.strip()
    return pins


def changes(locked: dict[str, str], now: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(name, locked version or '-', installed version or '-')`` for every pin that differs."""
    names = sorted(set(locked) | set(now))
    return [(n, locked.get(n, "-"), now.get(n, "-")) for n in names if locked.get(n) != now.get(n)]


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("write", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    command, python, lock = argv[0], argv[1], Path(argv[2])
    now = installed(python)
    if command == "write":
        lock.write_text(HEADER + "".join(f"{n}=={v}\n" for n, v in sorted(now.items())))
        print(f"{lock}: {len(now)} pins")
        return 0
    moved = changes(parse(lock.read_text()), now)
    print(f"drift against {lock}: {len(moved)} of {len(now)} distributions differ")
    for name, old, new in moved:
        print(f"  {name:32s} {old:>14s} -> {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
