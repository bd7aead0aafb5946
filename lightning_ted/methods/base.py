"""The interface every pruning method implements: state -> kept set, observations -> state.

It is defined in the core (:mod:`lightning_ted.core.method`, :mod:`lightning_ted.core.method_inputs`), which
drives it; this module keeps its import path for the methods and for users' own subclasses.
"""

from __future__ import annotations

from lightning_ted.core.method import (
    DEFAULT_MAX_WEIGHT,
    STEP_SCALE_WARNING,
    PruningMethod,
    StepScaleWarning,
    WeightBoundWarning,
)
from lightning_ted.core.method_inputs import EpochInputs, HeadReadings, HeadStep, TrainedBefore

__all__ = [
    "DEFAULT_MAX_WEIGHT",
    "STEP_SCALE_WARNING",
    "EpochInputs",
    "HeadReadings",
    "HeadStep",
    "PruningMethod",
    "StepScaleWarning",
    "TrainedBefore",
    "WeightBoundWarning",
]
