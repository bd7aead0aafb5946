"""Where the core's warnings go. The core cannot tell which process is rank 0, so every warning it gives a user
passes through one sink: ``warnings.warn`` until the Lightning adapters install ``rank_zero_warn`` on import
(:mod:`lightning_ted.adapters`), so a DDP run warns once, not once per process.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

#: ``sink(message, category, stacklevel)``, called as ``warnings.warn`` would be from :func:`warn`.
WarningSink = Callable[[str, type[Warning], int], None]

_sink: WarningSink = warnings.warn


def set_warning_sink(sink: WarningSink) -> WarningSink:
    """Send the core's warnings to ``sink`` from now on; returns the sink it replaces.

    >>> previous = set_warning_sink(lambda message, category, stacklevel: print(category.__name__, message))
    >>> warn("a notice")
    UserWarning a notice
    >>> _ = set_warning_sink(previous)
    """
    global _sink
    previous, _sink = _sink, sink
    return previous


def warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 1) -> None:
    """Warn ``message`` through the sink, attributed (as ``warnings.warn`` counts ``stacklevel``) to the line
    that called this function by default."""
    _sink(message, category, stacklevel + 1)
