"""lightning-ted: dynamic data pruning with TED scores for PyTorch Lightning."""

from lightning_ted.callback import TEDPruningCallback
from lightning_ted.datamodule import DynamicPruningDataModule, IndexedSample
from lightning_ted.loss import pruned_loss
from lightning_ted.methods import TED, FullData, PruningMethod, build_method
from lightning_ted.schedules import ConstantSchedule, LinearSchedule, PruneSchedule, RollerCoasterSchedule
from lightning_ted.selection import Selection

__all__ = [
    "TED",
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
]
__version__ = "0.1.0"
