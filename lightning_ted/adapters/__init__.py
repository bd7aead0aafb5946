"""The Lightning adapters: :class:`~lightning_ted.TEDPruningCallback` and
:class:`~lightning_ted.DynamicPruningDataModule`, and what they need from the Trainer (fit start, batch hooks
of a wrapped DataModule, LightningCLI nesting, checkpoints, the first-step checks, the loss helpers, the fit
summary). Works under both ``lightning`` and the standalone ``pytorch_lightning`` (``compat.py``).

Importing them sends the core's warnings (:mod:`lightning_ted.core.notices`) to ``rank_zero_warn``: the core
cannot tell the ranks apart, Lightning can.
"""

from lightning.pytorch.utilities import rank_zero_warn

from lightning_ted.core.notices import set_warning_sink


def _warn_on_rank_zero(message: str, category: type[Warning], stacklevel: int) -> None:
    """The core's warnings under Lightning: on global rank 0 only, attributed to the line that warned (the four
    frames between are ``rank_zero_warn``'s own three and this function)."""
    rank_zero_warn(message, category=category, stacklevel=stacklevel + 4)


set_warning_sink(_warn_on_rank_zero)
