"""The arithmetic: the budget frontier interpolated at a method's saving, paired gains and their errors.

Per seed, plain training's metric against its saved fraction ``1 - round(b E) / E`` is the frontier. A
pruned run's **gain** is its metric minus that seed's frontier interpolated (linearly; beyond the ends the
end segment extended) at the saved fraction the run reached, sign-flipped for ``mode="min"`` so a positive
gain is always better. The ± is the standard error of those paired per-seed gains.

>>> frontier_at([(0.0, 90.0), (0.5, 80.0)], 0.25)
85.0
>>> mean_se([1.0, 3.0])
(2.0, 1.0)
"""

from __future__ import annotations

import math
import statistics

NAN = float("nan")
EXTRAPOLATION = 0.005  # a saving this far past the cheapest budget is marked extrapolated (not rounding)


def frontier_at(points: list[tuple[float, float]], x: float) -> float:
    """Linear interpolation of (saved, metric) points at ``x``; beyond the ends, the end segment extended."""
    pts = sorted(points)
    if len(pts) == 1:
        return pts[0][1]
    i = 1
    while i < len(pts) - 1 and x > pts[i][0]:
        i += 1
    (x0, y0), (x1, y1) = pts[i - 1], pts[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample sd / sqrt(n)); the error is NaN for fewer than 2 values."""
    if not values:
        return NAN, NAN
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else NAN
    return statistics.fmean(values), se


def summarise(records: list[dict], mode: str = "max") -> list[dict]:
    """One row per (method, level): seeds, saved fraction, metric ± SE, gain over the frontier ± paired SE,
    fit seconds and speedup against plain training at E of the same seed. Budget rows first (longest first)."""
    sign = 1.0 if mode == "max" else -1.0
    fronts: dict[int, list[tuple[float, float]]] = {}
    for r in records:
        if r["method"] == "full":
            fronts.setdefault(r["seed"], []).append((r["saved"], r["metric"]))
    full_e = {r["seed"]: r for r in records if r["method"] == "full" and r["saved"] == 0.0}
    reach = max((x for pts in fronts.values() for x, _ in pts), default=0.0)
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["level"]), []).append(r)
    rows = []
    for (method, level), runs in groups.items():
        budget = method == "full"
        paired = [r for r in runs if len(fronts.get(r["seed"], [])) >= 2]
        gains = [sign * (r["metric"] - frontier_at(fronts[r["seed"]], r["saved"])) for r in paired]
        gain, gain_se = (0.0, 0.0) if budget else mean_se(gains)
        metric, metric_se = mean_se([r["metric"] for r in runs])
        speed = [full_e[r["seed"]]["fit_seconds"] / r["fit_seconds"] for r in runs if r["seed"] in full_e]
        saved = statistics.fmean(r["saved"] for r in runs)
        rows.append(dict(
            method=method, level=level, epochs=runs[0]["epochs"], seeds=len(runs), paired=len(gains), saved=saved,
            metric=metric, metric_se=metric_se, gain=gain, gain_se=gain_se,
            fit_seconds=statistics.fmean(r["fit_seconds"] for r in runs),
            speedup=statistics.fmean(speed) if speed else NAN,
            extrapolated=not budget and saved > reach + EXTRAPOLATION,
        ))  # fmt: skip
    rows.sort(
        key=lambda r: (r["method"] != "full", -r["epochs"] if r["method"] == "full" else 0, r["method"], r["level"])
    )
    return rows


def decimals(rows: list[dict]) -> int:
    """Digits to print: 4 for metrics on a 0-1 scale (accuracy as a fraction), else 2."""
    return 4 if all(abs(r["metric"]) <= 1.5 for r in rows if r["metric"] == r["metric"]) else 2


def verdict(rows: list[dict], metric: str) -> str:
    """One line: the best pruning row more than 2 SE above the frontier, or that none is."""
    pruned = [r for r in rows if r["method"] != "full" and r["paired"]]
    if not pruned:
        return "no pruned run has a frontier to compare with yet (run the budget points of the same seeds)"
    d = decimals(rows)
    best = max(pruned, key=lambda r: r["gain"])
    se = best["gain_se"]
    what = f"{best['method']} at {100 * best['saved']:.0f}% saved: {best['gain']:+.{d}f}"
    what += f" ± {se:.{d}f}" if se == se else f" ({best['paired']} seed, no standard error)"
    if se == se:
        above = [r for r in pruned if r["gain_se"] == r["gain_se"] and r["gain"] > 2 * r["gain_se"]]
        if above:
            best = max(above, key=lambda r: r["gain"])
            what = (f"{best['method']} at {100 * best['saved']:.0f}% saved: {best['gain']:+.{d}f} ± "
                    f"{best['gain_se']:.{d}f}")  # fmt: skip
            return (f"{what} {metric} over training fewer epochs (more than 2 SE above it, {best['paired']} seeds): "
                    "pruning is worth it here")  # fmt: skip
        return (
            f"not above training for fewer epochs by more than 2 SE; the best, {what} {metric} ({best['paired']} seeds)"
        )
    verb = "above" if best["gain"] > 0 else "not above"
    return f"{what} {metric}: {verb} training for fewer epochs (one seed: no standard error, not a decision)"
