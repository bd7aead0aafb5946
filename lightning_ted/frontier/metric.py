"""Which direction of the user's metric is better: read from ``--mode``, the config's ``ModelCheckpoint`` or the
metric's name, and refused where they disagree or say nothing (a loss must never be reported as a gain)."""

from __future__ import annotations

import re

from lightning_ted.frontier.errors import FrontierRefusal

_MIN_WORDS = ("loss", "error", "perplexity")  # anywhere in the name; the short ones below as whole tokens
_MIN_TOKENS = {"err", "ppl", "mse", "rmse", "mae", "nll", "wer", "cer"}
_MAX_WORDS = {"acc", "accuracy", "f1", "auc", "auroc", "auprc", "precision", "recall", "iou", "miou", "map", "bleu",
              "rouge", "r2", "dice", "top1", "top5", "ap", "mcc", "kappa"}  # fmt: skip


def metric_direction(metric: str) -> str | None:
    """``"min"`` for a name that reads as a loss or error, ``"max"`` for a score (accuracy, F1, ...), else None.

    >>> metric_direction("val_loss"), metric_direction("val/acc1"), metric_direction("val_thing")
    ('min', 'max', None)
    """
    name = metric.lower()
    tokens = re.split(r"[^a-z0-9]+", name)
    if any(w in name for w in _MIN_WORDS) or any(t in _MIN_TOKENS for t in tokens):
        return "min"
    return "max" if any(t in _MAX_WORDS or t.startswith("acc") for t in tokens) else None


def resolve_mode(metric: str, mode: str | None, checkpoint: dict | None) -> str:
    """The metric's direction: ``--mode``, else the config's ``ModelCheckpoint`` when it monitors this metric,
    else the name. Refuses a checkpoint without a mode on a score (Lightning's default ``min`` would make a
    lower accuracy a gain), a checkpoint mode the name contradicts, and a name that says neither."""
    if mode is not None:
        return mode
    named = metric_direction(metric)
    init = (checkpoint or {}).get("init_args") or {}
    if init.get("monitor") == metric:
        given = init.get("mode")
        better = {"min": "lower", "max": "higher"}
        if given is None and named != "min":
            raise FrontierRefusal(
                f"trainer.callbacks has ModelCheckpoint(monitor={metric!r}) without a mode, so Lightning's default "
                f"mode='min' keeps the checkpoint with the lowest {metric}, and the frontier would count a lower "
                f"{metric} as better. Set the direction: mode: max in the ModelCheckpoint's init_args (your own "
                "training keeps the worst checkpoint otherwise), or pass --mode max (--mode min if lower is better)"
            )
        given = given or "min"
        if given not in better:
            raise FrontierRefusal(f"ModelCheckpoint(monitor={metric!r}, mode={given!r}): mode must be 'max' or 'min'")
        if named is not None and given != named:
            raise FrontierRefusal(
                f"ModelCheckpoint(monitor={metric!r}, mode={given!r}) counts a {better[given]} {metric} as better, "
                f"but the name reads as {'a loss' if named == 'min' else 'a score'} ({better[named]} is better). "
                f"Fix the mode in the config, or pass --mode {given} if it is right"
            )
        return given
    if named is None:
        raise FrontierRefusal(
            f"the metric {metric!r} does not say whether higher or lower is better: pass --mode max or --mode min "
            "(or monitor it with a ModelCheckpoint that sets mode)"
        )
    return named
