"""Pruning methods behind one interface; ``build_method`` turns a name into an instance."""

from __future__ import annotations

from lightning_ted.methods.base import PruningMethod
from lightning_ted.methods.full import FullData
from lightning_ted.methods.ted import TED

METHODS: dict[str, type[PruningMethod]] = {"full": FullData, "ted": TED}


def build_method(method: str | PruningMethod) -> PruningMethod:
    """Return ``method`` itself, or a default-configured instance of the method it names."""
    if isinstance(method, PruningMethod):
        return method
    try:
        return METHODS[method]()
    except KeyError:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {sorted(METHODS)}") from None


__all__ = ["METHODS", "TED", "FullData", "PruningMethod", "build_method"]
