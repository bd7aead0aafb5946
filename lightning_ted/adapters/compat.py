"""One callback and one datamodule class for both Lightning packages: ``lightning.pytorch`` and the
standalone ``pytorch_lightning`` that many tutorials and templates still import.

Each Trainer checks ``isinstance`` against its own package's ``Callback`` and ``LightningDataModule``.
When ``pytorch_lightning`` is installed, the package's classes derive from both (the hooks are the same),
so a project works with either Trainer without porting. The user's own DataModule and LightningModule may
come from either package too: :func:`overrides` tells which hooks they define against their own package's
base class.
"""

from __future__ import annotations

import importlib.util
from typing import Union

import lightning.pytorch as lp
from lightning_utilities.core.overrides import is_overridden


def _bases(name: str) -> tuple[type, ...]:
    own = getattr(lp, name)
    if importlib.util.find_spec("pytorch_lightning") is None:
        return (own,)
    import pytorch_lightning

    other = getattr(pytorch_lightning, name)
    return (own,) if other is own else (own, other)


CALLBACK_BASES = _bases("Callback")
DATAMODULE_BASES = _bases("LightningDataModule")
MODULE_BASES = _bases("LightningModule")
#: a DataModule of either package: the type LightningCLI/jsonargparse checks a nested ``datamodule`` against
AnyDataModule = Union[DATAMODULE_BASES]  # noqa: UP007 (a runtime tuple of classes, not a written union)


def logger_classes(name: str) -> tuple[type, ...]:
    """Logger class ``name`` (e.g. ``"WandbLogger"``) of each installed package: the two are unrelated classes,
    so an ``isinstance`` against ``lightning``'s alone misses a ``pytorch_lightning`` logger."""
    from lightning.pytorch import loggers

    own = getattr(loggers, name)
    if importlib.util.find_spec("pytorch_lightning") is None:
        return (own,)
    from pytorch_lightning import loggers as pl_loggers

    other = getattr(pl_loggers, name)
    return (own,) if other is own else (own, other)


def overrides(name: str, obj: object) -> bool:
    """Whether ``obj`` (a DataModule or LightningModule of either package) defines hook ``name`` itself.

    Lightning's ``is_overridden`` infers the base class from its own package only, so a
    ``pytorch_lightning`` DataModule made it raise ``Expected a parent``; here the base is the one ``obj``
    derives from, and an object of neither package defines nothing.
    """
    if obj is None:
        return False
    for base in (*DATAMODULE_BASES, *MODULE_BASES):
        if isinstance(obj, base):
            return is_overridden(name, obj, base)
    return False
