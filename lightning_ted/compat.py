"""One callback and one datamodule class for both Lightning packages: ``lightning.pytorch`` and the
standalone ``pytorch_lightning`` that many tutorials and templates still import.

Each Trainer checks ``isinstance`` against its own package's ``Callback`` and ``LightningDataModule``.
When ``pytorch_lightning`` is installed, the package's classes derive from both (the hooks are the same),
so a project works with either Trainer without porting.
"""

from __future__ import annotations

import importlib.util

import lightning.pytorch as lp


def _bases(name: str) -> tuple[type, ...]:
    own = getattr(lp, name)
    if importlib.util.find_spec("pytorch_lightning") is None:
        return (own,)
    import pytorch_lightning

    other = getattr(pytorch_lightning, name)
    return (own,) if other is own else (own, other)


CALLBACK_BASES = _bases("Callback")
DATAMODULE_BASES = _bases("LightningDataModule")
