"""The package layout stays small, acyclic and layered: no module over 300 lines, no import circle between modules
(package ``__init__`` re-export hubs aside; imports inside functions count too), and ``core/`` at the bottom."""

from __future__ import annotations

import ast
from pathlib import Path

import lightning_ted

ROOT = Path(lightning_ted.__file__).parent
MAX_LINES = 300
#: what ``core/`` may not import: Lightning (either package) and every layer that sits on top of it
ABOVE_CORE = ("lightning", "pytorch_lightning") + tuple(
    f"lightning_ted.{layer}"
    for layer in ("methods", "data", "observe", "adapters", "streaming", "zoo", "frontier", "research", "cli")
)


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


def _imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (inside functions and ``TYPE_CHECKING`` blocks too);
    a relative import is resolved against the module's package."""
    package = ("lightning_ted",) + path.relative_to(ROOT).parent.parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _is_above_core(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in ABOVE_CORE)


def test_is_above_core_matches_whole_module_names():
    assert _is_above_core("lightning.pytorch.utilities") and _is_above_core("lightning_ted.methods.base")
    assert not _is_above_core("lightning_utilities") and not _is_above_core("lightning_ted.core.method")


def test_core_imports_nothing_above_it():
    """``core/`` is the bottom layer: no Lightning and none of the layers built on it, so the run can be driven
    (and tested) without a Trainer and the outer layers depend on the core, never the reverse."""
    upward = {}
    for path in sorted((ROOT / "core").rglob("*.py")):
        names = sorted(name for name in _imported_names(path) if _is_above_core(name))
        if names:
            upward[str(path.relative_to(ROOT))] = names
    assert not upward, f"core/ modules importing from above the core: {upward}"


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
