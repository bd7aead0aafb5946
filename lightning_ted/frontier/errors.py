"""What stops the frontier command: a refusal (the answer would be wrong) or a signal (the report is partial)."""

from __future__ import annotations

import signal
from pathlib import Path


class FrontierRefusal(ValueError):
    """Raised (and printed as ``error: ...``, exit status 2) when a config or option would make the
    comparison with plain training for fewer epochs wrong; the message says what to change.

    A ``ValueError``, so code that calls the frontier's functions directly can catch it as one.

    Args:
        message: what is wrong and what to change.

    Examples:
        >>> from lightning_ted.frontier.config import method_spec
        >>> try:
        ...     method_spec("tde")
        ... except FrontierRefusal as refusal:
        ...     print(f"error: {refusal}")
        error: unknown method 'tde' in --methods; choose from [...]
    """


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: the command writes the report of the runs that finished and exits with
    128 + the signal number. A BaseException, so neither Lightning's nor a user's ``except Exception`` eats it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.report: Path | None = None  # frontier.md of the runs that finished, once written

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name
