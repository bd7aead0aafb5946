"""The ``lightning-ted`` console script: ``lightning-ted frontier ...`` runs the frontier command
(:mod:`lightning_ted.frontier.command`); every other subcommand (``fit``, ``validate``, ...) is the
LightningCLI of :mod:`lightning_ted.cli`. Kept apart from both so neither imports the other."""

from __future__ import annotations

import sys
import time


def main() -> None:
    """Entry point of the console script (returns nothing, so a finished CLI run exits with status 0)."""
    if len(sys.argv) > 1 and sys.argv[1] == "frontier":
        from lightning_ted.frontier import command

        # the overhead clock starts with this process, so interpreter start-up and imports count
        sys.exit(command.main(sys.argv[2:], start=time.perf_counter() - command.process_age()))
    from lightning_ted.cli import run_cli

    run_cli()


if __name__ == "__main__":
    main()
