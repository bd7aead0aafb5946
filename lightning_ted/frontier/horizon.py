"""Does the LR schedule follow the Trainer's run length? Read after ``configure_optimizers``, before training.

A budget point trains fewer epochs; its LR schedule must end when the shorter run ends (a cosine decay over
``self.trainer.max_epochs``, a ``OneCycleLR`` over ``total_optimizer_steps()``). A schedule sized to a fixed
length would leave the short run at a high LR, drag the frontier down and flatter every pruning method.
The check steps a copy of the schedule's state through 1.5x the run length and restores it: the run must
end where the LR has reached the lowest value the schedule takes there.
"""

from __future__ import annotations

import math
import warnings

import lightning as L

from lightning_ted.adapters.steps import total_optimizer_steps
from lightning_ted.frontier.errors import FrontierRefusal

TOLERANCE = 0.02  # share of the LR range the LR may still be above its lowest value when the run ends


def lr_trace(scheduler, steps: int) -> list[float]:
    """The first param group's LR after 0, 1, ... ``steps`` scheduler steps; the scheduler and optimizer are
    left as they were. Stops early when the scheduler refuses to step further (``OneCycleLR`` past its end)."""
    optimizer = scheduler.optimizer
    saved = scheduler.state_dict()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    lrs = [float(optimizer.param_groups[0]["lr"])]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(steps):
                try:
                    scheduler.step()
                except ValueError:
                    break
                lrs.append(float(optimizer.param_groups[0]["lr"]))
    finally:
        scheduler.load_state_dict(saved)
        for group, values in zip(optimizer.param_groups, groups, strict=True):
            group.update(values)
    return lrs


def check_follows(scheduler, length: int, interval: str, max_epochs: int) -> None:
    """Refuse when the LR is not at the end of its decay after ``length`` scheduler steps (the run)."""
    lrs = lr_trace(scheduler, math.ceil(1.5 * length) + 2)
    lo, hi = min(lrs), max(lrs)
    if hi - lo <= 1e-12 * max(abs(hi), 1e-30):
        return  # a constant LR has no horizon to follow
    end = min(lrs[max(0, length - 1) : length + 1] or lrs[-1:])
    if end <= lo + TOLERANCE * (hi - lo):
        return
    reached = next(i for i, lr in enumerate(lrs) if lr <= lo + TOLERANCE * (hi - lo))
    raise FrontierRefusal(
        f"the LR schedule ({type(scheduler).__name__}, stepped per {interval}) does not follow the Trainer's run "
        f"length: this run is {length} {interval}s long (trainer.max_epochs={max_epochs}) and ends at LR "
        f"{end:.3g}, but the schedule falls to {lo:.3g} only after "
        f"{reached if reached < len(lrs) - 1 else f'more than {reached}'} {interval}s. A run for fewer epochs "
        "would stop before its LR decays, the frontier would be too low and pruning would look better than it "
        "is. Size the schedule from the Trainer in configure_optimizers: self.trainer.max_epochs for a per-epoch "
        "schedule, lightning_ted.total_optimizer_steps(self.trainer) for a per-step one."
    )


class HorizonCheck(L.Callback):
    """Checks every LR scheduler of the run at train start (after ``configure_optimizers``)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for config in trainer.lr_scheduler_configs:
            if config.reduce_on_plateau:
                continue  # follows the metric, not a horizon
            if config.interval == "step":
                steps = total_optimizer_steps(trainer)
            else:
                steps = trainer.max_epochs
            length = math.ceil(steps / max(1, config.frequency))
            check_follows(config.scheduler, length, config.interval, trainer.max_epochs)
