"""``lightning-ted frontier``: is pruning worth it on this task? Every pruning method of a LightningCLI config
against the obvious alternative, plain training for fewer epochs (the budget frontier), on paired seeds.

Modules, one job each: :mod:`.config` reads the user's config and writes each run's overrides,
:mod:`.plan` lists the runs, :mod:`.horizon` checks the LR schedule follows the run length, :mod:`.runner`
trains one run, :mod:`.cache` keeps finished runs in ``runs.jsonl``, :mod:`.gains` does the arithmetic
(interpolated frontier, paired standard errors), :mod:`.report` writes the table, plot and verdict, and
:mod:`.command` is the command line.
"""

from lightning_ted.frontier.errors import FrontierRefusal
from lightning_ted.frontier.gains import frontier_at, mean_se, summarise, verdict

__all__ = ["FrontierRefusal", "frontier_at", "mean_se", "summarise", "verdict"]
