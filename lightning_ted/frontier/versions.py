"""The versions a run's numbers depend on besides its config: this package's and the training libraries'.
Cached runs are keyed on them, so a run made under another release is trained again, not reported as today's."""

from __future__ import annotations

from importlib import metadata

LIBRARIES = ("torch", "torchvision", "lightning", "torchmetrics", "transformers", "litdata", "numpy")


def library_versions() -> dict[str, str]:
    """``{"lightning-ted": ..., library: version}`` for the libraries installed here (absent ones left out).

    >>> sorted(library_versions())[:2]
    ['lightning', 'lightning-ted']
    """
    import lightning_ted

    found = {"lightning-ted": lightning_ted.__version__}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
