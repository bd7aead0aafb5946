"""lightning-ted: dynamic data pruning with TED scores for PyTorch Lightning."""

from lightning_ted.adapters.callback import TEDPruningCallback
from lightning_ted.adapters.datamodule import DynamicPruningDataModule
from lightning_ted.adapters.loss import distillation_loss, pruned_loss, sequence_loss
from lightning_ted.adapters.steps import total_optimizer_steps
from lightning_ted.core.batch import IndexedSample
from lightning_ted.core.schedules import ConstantSchedule, LinearSchedule, PruneSchedule, RollerCoasterSchedule
from lightning_ted.core.selection import Selection
from lightning_ted.methods import (
    CAT,
    CCS,
    EL2N,
    METHODS,
    TED,
    UCB,
    EpsilonGreedy,
    Forgetting,
    FullData,
    GraNd,
    InfoBatch,
    OrderDP,
    PruningMethod,
    RandomSubset,
    SeTa,
    build_method,
)

__all__ = [
    "CAT",
    "CCS",
    "EL2N",
    "METHODS",
    "TED",
    "UCB",
    "EpsilonGreedy",
    "Forgetting",
    "GraNd",
    "InfoBatch",
    "OrderDP",
    "RandomSubset",
    "SeTa",
    "distillation_loss",
    "ConstantSchedule",
    "DynamicPruningDataModule",
    "FullData",
    "IndexedSample",
    "LinearSchedule",
    "PruneSchedule",
    "PruningMethod",
    "RollerCoasterSchedule",
    "Selection",
    "TEDPruningCallback",
    "build_method",
    "pruned_loss",
    "sequence_loss",
    "total_optimizer_steps",
]
# Raised whenever a change alters what a training run computes: the benchmark caches key their runs on it
# (experiments/run_identity.py), so a cached number is never reported under code that would not reproduce it.
__version__ = "0.2.0"
