"""The docstrings' examples run: every module's doctests pass, and every exported class documents its
arguments (``Args:``), what its construction raises (``Raises:``) and shows a short example (``>>>``)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
from pathlib import Path

import pytest

import lightning_ted

ROOT = Path(lightning_ted.__file__).parent
EXPORTING = (
    "lightning_ted",
    "lightning_ted.methods",
    "lightning_ted.research",
    "lightning_ted.frontier",
    "lightning_ted.streaming",
)


def _module_names() -> list[str]:
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("lightning_ted",) + path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _import(name: str):
    try:
        return importlib.import_module(name)
    except Exception as err:  # every module must import: a skipped one would hide its doctests
        pytest.fail(f"{name} does not import, so its doctests cannot run: {type(err).__name__}: {err}")


def test_every_module_is_walked():
    names = _module_names()
    assert "lightning_ted.core.schedules" in names and "lightning_ted.zoo.nlu" in names


@pytest.mark.parametrize("name", _module_names())
def test_doctests_pass(name):
    module = _import(name)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    # only the module's own objects: a re-export hub would otherwise run (and report) its members' tests again
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test, out=out.write)
    failed, tried = runner.failures, runner.tries
    assert failed == 0, f"{failed} of {tried} doctest examples in {name} failed:\n{out.getvalue()}"


def _exported_classes() -> list[tuple[str, type]]:
    seen, out = set(), []
    for package in EXPORTING:
        module = importlib.import_module(package)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) and obj not in seen:
                seen.add(obj)
                out.append((f"{package}.{attr}", obj))
    return out


def _takes_arguments(cls: type) -> bool:
    """Whether constructing ``cls`` takes arguments: its own or an inherited ``__init__`` (or a NamedTuple's
    ``__new__``), as ``inspect.signature`` resolves it. ``object.__init__``'s generic ``*args, **kwargs`` does not
    count, nor does a builtin base's (an exception's or warning's message)."""
    try:
        return len(inspect.signature(cls).parameters) > 0  # the signature of cls(...) has no self
    except (TypeError, ValueError):  # a builtin's constructor (Exception, Warning): no signature to document
        return False


def _raises_in_own_init(cls: type) -> bool:
    init = cls.__dict__.get("__init__")
    if init is None or not inspect.isfunction(init):
        return False
    try:
        return "raise " in inspect.getsource(init)
    except (OSError, TypeError):  # generated (a dataclass's __init__): no source, nothing it raises by hand
        return False


def test_every_exported_class_has_args_raises_and_example():
    missing = {}
    for path, cls in _exported_classes():
        doc = inspect.getdoc(cls) or ""
        lacks = []
        if ">>>" not in doc:
            lacks.append("an example (>>>)")
        if _takes_arguments(cls) and "Args:" not in doc:
            lacks.append("Args:")
        if _raises_in_own_init(cls) and "Raises:" not in doc:
            lacks.append("Raises:")
        if lacks:
            missing[path] = lacks
    assert not missing, "exported classes whose docstring lacks a section:\n" + "\n".join(
        f"  {path}: {', '.join(lacks)}" for path, lacks in missing.items()
    )
