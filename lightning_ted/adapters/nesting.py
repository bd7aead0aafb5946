"""A wrapped DataModule keeps its own hyperparameters when LightningCLI builds the nesting.

LightningCLI instantiates every ``LightningDataModule`` under its ``data`` key with that key's whole config
as the "given" hyperparameters, so a DataModule nested in ``DynamicPruningDataModule``'s ``init_args``
that calls ``self.save_hyperparameters()`` received the wrapper's arguments (``datamodule``, ``method``,
``batch_size=None``, ...) instead of its own. :func:`restore_own_hparams` runs while the wrapper is built
(the CLI's context is still set) and replaces them with the wrapped module's own config entry.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

_CONTEXTS = ("lightning.pytorch.core.mixins.hparams_mixin", "pytorch_lightning.core.mixins.hparams_mixin")


def given_hparams() -> dict[str, Any] | None:
    """The hyperparameters LightningCLI (either package) hands the DataModule being built, if any."""
    for name in _CONTEXTS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        given = module._given_hyperparameters.get()
        if given is not None:
            return given
    return None


def own_config(given: dict[str, Any]) -> dict[str, Any] | None:
    """The wrapped DataModule's own hyperparameters, from the ``datamodule`` entry of the wrapper's config,
    in the layout LightningCLI gives a top-level one (``_class_path`` and its init arguments)."""
    nested = given.get("datamodule")
    if not isinstance(nested, dict) or "class_path" not in nested:
        return None
    own = {"_class_path": nested["class_path"], **(nested.get("init_args") or {}), **(nested.get("dict_kwargs") or {})}
    if "_instantiator" in given:
        own["_instantiator"] = given["_instantiator"]
    return own


def restore_own_hparams(inner: Any) -> None:
    """Give ``inner`` (the wrapped DataModule) its own hyperparameters where the CLI gave it the wrapper's.

    Only when ``inner`` saved hyperparameters that all come from the wrapper's config (it called
    ``save_hyperparameters`` under the CLI); keys it left out of the wrapper's (``ignore=``) stay out.
    Outside LightningCLI nothing changes: ``save_hyperparameters`` then reads the module's own ``__init__``.
    """
    given = given_hparams()
    saved = getattr(inner, "__dict__", {}).get("_hparams")
    if given is None or not saved:
        return
    own = own_config(given)
    if own is None or not all(k in given and _same(given[k], v) for k, v in saved.items()):
        return
    left_out = set(given) - set(saved)
    hparams = type(saved)({k: v for k, v in own.items() if k not in left_out})
    inner._hparams = hparams
    inner._hparams_initial = copy.deepcopy(hparams)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # tensors and other values without a plain truth value: identity only
        return a is b
