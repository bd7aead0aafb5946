"""The package layout stays small and acyclic: no module over 300 lines, no import circle between modules
(package ``__init__`` re-export hubs aside; imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import lightning_ted

ROOT = Path(lightning_ted.__file__).parent
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("lightning_ted",) + path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def test_no_module_is_over_300_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (lines): {long}"


def test_no_import_circle_between_modules():
    modules = _modules()
    hubs = {name for name, path in modules.items() if path.name == "__init__.py"}
    graph = _import_graph(modules)

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in graph[stack.pop()] - hubs:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    circular = sorted(name for name in graph if name not in hubs and name in reachable(name))
    assert not circular, f"modules on an import circle: {circular}"


def test_every_lightning_hook_the_adapters_implement_is_marked_override():
    """The callback's and the datamodule's Lightning hooks carry ``@override`` (as Lightning's own callbacks
    do), so a hook renamed in Lightning fails type checks instead of silently never being called."""
    from lightning.pytorch import Callback, LightningDataModule

    from lightning_ted import DynamicPruningDataModule, TEDPruningCallback

    unmarked = []
    for cls, base in ((TEDPruningCallback, Callback), (DynamicPruningDataModule, LightningDataModule)):
        for name in dir(base):
            if name.startswith("_") or not callable(getattr(base, name, None)):
                continue
            impl = getattr(cls, name)
            owner = next(k for k in cls.__mro__ if name in vars(k))
            if owner.__module__.startswith("lightning_ted") and not getattr(impl, "__override__", False):
                unmarked.append(f"{cls.__name__}.{name}")
    assert not unmarked, f"mark these hooks @override: {unmarked}"
