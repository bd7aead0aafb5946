"""The ``ig/*`` readings (internal generalization): how fast the pruned samples' loss falls against the kept ones'.

The meter lives in the core (:mod:`lightning_ted.core.generalization`, which explains the readings), because the
run folds it and the generalization schedules read it; this module keeps its public import path.
"""

from __future__ import annotations

from lightning_ted.core.generalization import LOSS_BINS, MAX_CLASSES, GeneralizationMeter, GeneralizationReading

__all__ = ["LOSS_BINS", "MAX_CLASSES", "GeneralizationMeter", "GeneralizationReading"]
