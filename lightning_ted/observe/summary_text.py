"""The end-of-fit summary as printed (rank zero): one line per quantity, per-class shares, then notes.
Computed by :class:`~lightning_ted.adapters.fit_summary.FitSummary`; kept apart so the counting stays short."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only


def format_summary(
    values: dict[str, float],
    method: str,
    epochs: list[int],
    n: int,
    notes: list[str] | None = None,
    this_fit: bool = False,
) -> str:
    """The printed summary: one line per quantity, per-class shares on their own lines, then what the span is
    (``this_fit``: the wall time covers only this fit of a resumed run, the training time the whole span)."""
    v = values
    span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
    full = v["summary/sample_passes"] + v["summary/saved_sample_passes"]
    ideal = 1.0 / (1.0 - v["summary/saved_fraction"]) if v["summary/saved_fraction"] < 1 else math.inf
    lines = [
        f"lightning-ted fit summary ({method}, {span}, {n} samples)",
        f"  sample-passes saved  {v['summary/saved_sample_passes']:.0f} of {full:.0f} "
        f"({100 * v['summary/saved_fraction']:.1f}%)",
        f"  optimizer steps      {v['summary/optimizer_steps']:.0f} (full data: "
        f"{v['summary/full_data_optimizer_steps']:.0f})",
    ]
    if v["summary/training_batches"] != v["summary/optimizer_steps"]:
        lines.append(
            f"  training batches     {v['summary/training_batches']:.0f} (full data: "
            f"{v['summary/full_data_training_batches']:.0f})"
        )
    wall = f"{v['summary/wall_seconds']:.1f} s (training {v['summary/train_seconds']:.1f} s)"
    if this_fit:
        wall = f"{v['summary/wall_seconds']:.1f} s this fit (training {v['summary/train_seconds']:.1f} s over {span})"
    lines += [
        f"  wall time            {wall}",
        f"  speedup              {v['summary/speedup']:.2f}x (ideal {ideal:.2f}x): full data would take "
        f"{v['summary/full_data_seconds']:.1f} s at {1e3 * v['summary/full_data_seconds_per_sample']:.3g} ms/sample",
    ]
    if v.get("summary/pruned_epochs", 0) > 0:
        for name, label in (("never_dropped", "never dropped"), ("always_dropped", "always dropped")):
            lines.append(
                f"  {label:<20} {100 * v[f'summary/{name}']:.1f}% of samples "
                f"(over {v['summary/pruned_epochs']:.0f} pruning epochs)"
            )
            per_class = [(k.rsplit("_", 1)[-1], x) for k, x in v.items() if k.startswith(f"summary/{name}/class_")]
            for start in range(0, len(per_class), 8):
                chunk = ", ".join(f"{c}: {100 * x:.0f}%" for c, x in per_class[start : start + 8])
                lines.append(f"    class {chunk}")
        if v.get("summary/unlabelled_samples"):
            lines.append(
                f"    {v['summary/unlabelled_samples']:.0f} samples with a negative label (e.g. ignore_index) are in "
                "no class"
            )
    else:
        lines.append("  no epoch dropped samples (never/always dropped shares need a pruning epoch)")
    if "summary/ig_pruned_loss_change" in v:  # observe/generalization.py
        kept = v.get("summary/ig_kept_loss_change", math.nan)
        if "summary/ig_ratio" in v:
            pace = f"pruned samples improved {100 * v['summary/ig_ratio']:.0f}% as fast as kept ones"
        else:
            rose = "no pace: the kept samples' loss did not fall"
            pace = rose if kept >= 0 else "no sample was kept two epochs running"
        lines.append(
            f"  internal generalization  {pace} (loss change per epoch {v['summary/ig_pruned_loss_change']:+.3g} "
            f"pruned, {kept:+.3g} kept; over {v['summary/ig_epochs']:.0f} epochs)"
        )
    lines += [f"  note: {note}" for note in notes or []]
    return "\n".join(lines)


def sync_device(trainer: Any) -> None:
    """Wait for queued GPU work so epoch times are wall times (once per epoch boundary, never per step)."""
    root = getattr(getattr(trainer, "strategy", None), "root_device", None)
    if root is not None and root.type == "cuda":
        torch.cuda.synchronize(root)


@rank_zero_only
def print_summary(trainer: Any, text: str) -> None:
    bar = getattr(trainer, "progress_bar_callback", None)
    if bar is not None and hasattr(bar, "print"):
        bar.print(text)  # writes above a live progress bar instead of through it
    else:
        print(text)
