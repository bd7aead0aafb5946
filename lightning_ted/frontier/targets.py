"""``--targets``: the schedule ratio at which the config's schedule skips a target share of sample-passes.

Users think in savings ("save 30%"), schedules take a per-epoch ratio that warm-up and anneal epochs dilute
(and a roller coaster bends). For a target t the ratio r solves ``mean over the E epochs of prune_ratio(r,
epoch) = t``, by bisection on the config's own schedule class and arguments. That is the saving of a method
that drops exactly the scheduled share (TED, random); InfoBatch and SeTa drop less, and the table reports
what each run reached.

>>> ratio_for_target({"class_path": "lightning_ted.ConstantSchedule"}, 0.5, 16)  # 13 pruning epochs of 16
0.6154
"""

from __future__ import annotations

import importlib

from lightning_ted.frontier.errors import FrontierRefusal

MAX_RATIO = 0.99


def _schedule_class(entry: dict):
    module, _, name = entry["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)


def _schedule(entry: dict | None, ratio: float, max_epochs: int):
    entry = entry or {"class_path": "lightning_ted.RollerCoasterSchedule"}
    cls = _schedule_class(entry)
    level = cls.level_argument
    try:
        schedule = cls(**{**entry.get("init_args", {}), level: ratio})
        schedule.follow(max_epochs)
    except ValueError as err:
        raise FrontierRefusal(f"the config's schedule refuses {level}={ratio}: {err}") from None
    return schedule


def expected_saving(entry: dict | None, ratio: float, max_epochs: int) -> float:
    """Share of the E epochs' sample-passes the schedule skips at ``ratio`` (an exact-count method)."""
    schedule = _schedule(entry, ratio, max_epochs)
    return sum(schedule.prune_ratio(epoch) for epoch in range(max_epochs)) / max_epochs


def ratio_for_target(entry: dict | None, target: float, max_epochs: int) -> float:
    """The ratio (4 decimals) whose expected saving is ``target``; refused when the schedule cannot reach it. A
    budget schedule (``level_argument = "saved"``) takes the target itself; one that fixes no saving in advance
    (``steps_known = False``) cannot take a target."""
    cls = _schedule_class(entry) if entry else None
    if cls is not None and not cls.steps_known:
        raise FrontierRefusal(
            f"--targets: {cls.__name__} follows the readings of each run, so it fixes no saving in advance; give "
            f"its {cls.level_argument} with --ratios instead (each run reports what it saved)"
        )
    if cls is not None and cls.level_argument == "saved":
        try:
            expected_saving(entry, target, max_epochs)  # the schedule refuses a saving its epochs cannot reach
        except ValueError as err:
            raise FrontierRefusal(f"--targets {target}: {err}") from None
        return round(target, 4)
    most = expected_saving(entry, MAX_RATIO, max_epochs)
    if not 0.0 < target <= most + 1e-9:
        raise FrontierRefusal(
            f"--targets {target}: the config's schedule saves at most {most:.1%} of the sample-passes over "
            f"{max_epochs} epochs (warm-up and anneal epochs train on all data); choose targets in (0, {most:.2f}]"
        )
    lo, hi = 0.0, MAX_RATIO
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_saving(entry, mid, max_epochs) < target else (lo, mid)
    return round((lo + hi) / 2, 4)


def check_ratios(ratios: list[float], source: str, zero_prunes: bool = False) -> None:
    """Refuse, before any run, a ratio outside (0, 1): a schedule's ratio is the share of samples skipped in a
    pruning epoch, so 1 trains on nothing and 0 is plain training (the frontier's ``full b=1.0`` already),
    unless every method run still prunes at 0 (``zero_prunes``: SeTa's window keeps only its groups)."""
    for ratio in ratios:
        if not (0.0 < ratio < 1.0 or (zero_prunes and ratio == 0.0)):
            why = "skip every sample, so nothing would train"
            if ratio <= 0:
                why = "skip nothing: plain training, which the frontier runs already as full b=1.0"
            raise FrontierRefusal(
                f"{source} {ratio}: a schedule ratio is the share of samples skipped in each pruning epoch, and "
                f"{ratio} would {why}. Give ratios in (0, 1), e.g. --ratios 0.3 0.5 0.7, or the share of "
                "sample-passes to save with --targets 0.3 0.5"
            )
