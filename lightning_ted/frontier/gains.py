"""The arithmetic: the budget frontier interpolated at a method's saving, paired gains and their errors.

Per seed, plain training's metric against its saved fraction ``1 - round(b E) / E`` is the frontier. A
pruned run's **gain** is its metric minus that seed's frontier interpolated (linearly; beyond the ends the
end segment extended) at the saved fraction the run reached, sign-flipped for ``mode="min"`` so a positive
gain is always better. The ± is the standard error of those paired per-seed gains. A speedup above
``1 / (1 - saved)``, what skipping that share of sample-passes allows at best, is flagged as timing noise;
:func:`advice` adds the next step after an undecided verdict and warns when full data is still moving at E.

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
CONVERGED_POINTS = 0.3  # full data at E and at the longest budget closer than this: converged enough
MAX_SEEDS = 20  # more seeds than this to resolve a gain: too small to matter, said so instead


def frontier_at(points: list[tuple[float, float]], x: float) -> float:
    """Linear interpolation of (saved, metric) points at ``x``; beyond the ends, the end segment extended.
    Points at the same saving (two budgets of one epoch count in an older cache) count as their mean."""
    same: dict[float, list[float]] = {}
    for saved, metric in points:
        same.setdefault(saved, []).append(metric)
    pts = sorted((saved, statistics.fmean(ys)) for saved, ys in same.items())
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
    fit seconds and speedup against plain training at E of the same seed (``speedup_noise``: above the ideal
    ``1 / (1 - saved)``). Budget rows first (longest first), one per epoch count whatever b named it."""
    sign = 1.0 if mode == "max" else -1.0
    budgets = {(r["seed"], r["epochs"]): r for r in records if r["method"] == "full"}  # one run per seed and length
    records = [r for r in records if r["method"] != "full"] + list(budgets.values())
    fronts: dict[int, list[tuple[float, float]]] = {}
    for r in records:
        if r["method"] == "full":
            fronts.setdefault(r["seed"], []).append((r["saved"], r["metric"]))
    full_e = {r["seed"]: r for r in records if r["method"] == "full" and r["saved"] == 0.0}
    reach = max((x for pts in fronts.values() for x, _ in pts), default=0.0)
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["epochs"] if r["method"] == "full" else r["level"]), []).append(r)
    rows = []
    for (method, level), runs in groups.items():
        budget = method == "full"
        level = runs[0]["level"] if budget else level
        paired = [r for r in runs if len(fronts.get(r["seed"], [])) >= 2]
        gains = [sign * (r["metric"] - frontier_at(fronts[r["seed"]], r["saved"])) for r in paired]
        gain, gain_se = (0.0, 0.0) if budget else mean_se(gains)
        metric, metric_se = mean_se([r["metric"] for r in runs])
        speed = [full_e[r["seed"]]["fit_seconds"] / r["fit_seconds"] for r in runs if r["seed"] in full_e]
        saved = statistics.fmean(r["saved"] for r in runs)
        speedup = statistics.fmean(speed) if speed else NAN
        ideal = 1.0 / (1.0 - saved) if saved < 1.0 else math.inf
        rows.append(dict(
            method=method, level=level, epochs=runs[0]["epochs"], seeds=len(runs), paired=len(gains), saved=saved,
            metric=metric, metric_se=metric_se, gain=gain, gain_se=gain_se,
            fit_seconds=statistics.fmean(r["fit_seconds"] for r in runs),
            speedup=speedup, speedup_ideal=ideal,
            speedup_noise=speedup == speedup and round(speedup, 2) > round(ideal, 2),
            extrapolated=not budget and saved > reach + EXTRAPOLATION, measures=measures(runs),
        ))  # fmt: skip
    rows.sort(
        key=lambda r: (r["method"] != "full", -r["epochs"] if r["method"] == "full" else 0, r["method"], r["level"])
    )
    return rows


def measures(runs: list[dict]) -> dict[str, tuple[float, float, int]]:
    """``--measure``'s numbers over ``runs``: ``{name: (mean, SE, runs measured)}`` for every numeric measure
    (runs cached without it are left out of its mean, and the count says so)."""
    values: dict[str, list[float]] = {}
    for r in runs:
        for name, value in (r.get("extra") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.setdefault(name, []).append(float(value))
    return {name: (*mean_se(v), len(v)) for name, v in sorted(values.items())}


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


def _next_step(rows: list[dict], d: int) -> str | None:
    """After a verdict that decides nothing: how many seeds, for which methods and ratios, or why not more."""
    pruned = [r for r in rows if r["method"] != "full" and r["paired"]]
    with_se = [r for r in pruned if r["gain_se"] == r["gain_se"]]
    if pruned and not with_se:
        return "Next: --seeds 3 or more for a standard error (seed 0's runs are cached); one seed decides nothing"
    if not with_se or any(r["gain"] > 2 * r["gain_se"] for r in with_se):
        return None
    hopeful = [r for r in with_se if r["gain"] > 0]
    if not hopeful:
        if all(r["gain"] < -2 * r["gain_se"] for r in with_se):
            return "Next: none; every pruned run is more than 2 SE below the frontier: train fewer epochs to save here"
        return ("Next: no pruned run is above the frontier, and more seeds would only narrow that; try other savings "
                "(--targets 0.3 0.5 0.7) or methods (--methods ...) before more seeds")  # fmt: skip
    best = max(hopeful, key=lambda r: r["gain"])
    spread = best["gain_se"] * math.sqrt(best["paired"])
    need = math.floor((2 * spread / best["gain"]) ** 2) + 1  # SE = SD / sqrt(n): beyond 2 SE needs n > (2 SD / gain)^2
    what = f"{best['method']} r={best['level']}'s {best['gain']:+.{d}f}"
    if need > MAX_SEEDS:
        return (f"Next: {what} is small against its spread (about {need} seeds to tell it from noise): pruning gains "
                "little here; try larger savings (--targets 0.5 0.7) before more seeds")  # fmt: skip
    methods = " ".join(sorted({r["method"] for r in hopeful}))
    ratios = " ".join(str(v) for v in sorted({r["level"] for r in hopeful}))
    return (f"Next: rerun with --seeds {need} --methods {methods} --ratios {ratios} (the gains above zero; the "
            f"{best['paired']} seeds run so far are cached, not rerun): at the spread seen, {what} clears 2 SE with "
            f"about {need} seeds if it holds")  # fmt: skip


def _convergence(rows: list[dict], metric: str, mode: str, d: int) -> str | None:
    """Warns when full data at E and at the longest shorter budget differ by more than 0.3 points."""
    budgets = sorted((r for r in rows if r["method"] == "full"), key=lambda r: -r["epochs"])
    if len(budgets) < 2 or budgets[0]["saved"] != 0.0:
        return None
    at_e, longest = budgets[0], budgets[1]
    points = (at_e["metric"] - longest["metric"]) * (100 if d == 4 else 1)  # a 0-1 metric in percentage points
    if abs(points) <= CONVERGED_POINTS:
        return None
    than = f"full data at E = {at_e['epochs']} epochs scores {points:+.2f} points {metric} against b={longest['level']}"
    than += f" ({longest['epochs']} epochs), more than {CONVERGED_POINTS}"
    if (points > 0) == (mode == "max"):
        return (f"Not converged: {than}: training still gains at E, so the frontier is steep there and this answer "
                "holds for this E only; raise trainer.max_epochs to the length you would train to convergence and "
                "run the frontier there")  # fmt: skip
    return (f"Not converged: {than}, worse with more epochs (overfitting, or noise): full data at E is a "
            "weak baseline; fix the training (regularisation, LR) or lower trainer.max_epochs to its peak")  # fmt: skip


def advice(rows: list[dict], metric: str, mode: str = "max") -> list[str]:
    """Lines under the verdict: the next step when it decides nothing (more seeds, which methods and ratios),
    a cheaper budget for an extrapolated saving, and a warning when full data has not converged at E."""
    d = decimals(rows) if rows else 4
    lines = [_next_step(rows, d), _convergence(rows, metric, mode, d)]
    beyond = [r for r in rows if r["method"] != "full" and r["extrapolated"]]
    full_e = max((r["epochs"] for r in rows if r["method"] == "full"), default=0)
    if beyond and full_e:
        far = max(r["saved"] for r in beyond)
        epochs = math.floor((1 - far) * full_e + 1e-9)  # a whole-epoch budget saving at least ``far``
        reach = f"no whole-epoch budget of E = {full_e} reaches it"
        if epochs >= 1:
            reach = f"add --budgets {epochs / full_e:.3g} ({epochs} of {full_e} epochs) so it is measured, not extended"
        lines.append(f"Extrapolated: savings up to {far:.0%} lie past the cheapest budget; {reach}")
    return [line for line in lines if line]
