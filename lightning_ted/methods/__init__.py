"""Pruning methods behind one interface; ``build_method`` turns a name into an instance."""

from __future__ import annotations

from lightning_ted.methods.bandit import UCB, EpsilonGreedy
from lightning_ted.methods.base import DEFAULT_MAX_WEIGHT, PruningMethod, StepScaleWarning, WeightBoundWarning
from lightning_ted.methods.ccs import CCS
from lightning_ted.methods.full import FullData
from lightning_ted.methods.infobatch import InfoBatch
from lightning_ted.methods.orderdp import OrderDP
from lightning_ted.methods.random_subset import RandomSubset
from lightning_ted.methods.seta import SeTa
from lightning_ted.methods.static import CAT, EL2N, Forgetting, GraNd, StaticScore
from lightning_ted.methods.ted import TED

METHODS: dict[str, type[PruningMethod]] = {
    cls.name: cls
    for cls in (
        FullData,
        RandomSubset,
        InfoBatch,
        OrderDP,
        SeTa,
        UCB,
        EpsilonGreedy,
        EL2N,
        GraNd,
        Forgetting,
        CCS,
        CAT,
        TED,
    )
}


def build_method(method: str | PruningMethod) -> PruningMethod:
    """Return ``method`` itself, or a default-configured instance of the method it names."""
    if isinstance(method, PruningMethod):
        return method
    try:
        return METHODS[method]()
    except KeyError:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {sorted(METHODS)}") from None


__all__ = [
    "CAT",
    "CCS",
    "DEFAULT_MAX_WEIGHT",
    "EL2N",
    "METHODS",
    "TED",
    "UCB",
    "EpsilonGreedy",
    "Forgetting",
    "FullData",
    "GraNd",
    "InfoBatch",
    "OrderDP",
    "PruningMethod",
    "RandomSubset",
    "SeTa",
    "StaticScore",
    "StepScaleWarning",
    "WeightBoundWarning",
    "build_method",
]
