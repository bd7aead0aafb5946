"""The one error the frontier command stops with: what the user asked would make the answer wrong."""

from __future__ import annotations


class FrontierRefusal(ValueError):
    """Raised (and printed as ``error: ...``, exit status 2) when a config or option would make the
    comparison with plain training for fewer epochs wrong; the message says what to change."""
