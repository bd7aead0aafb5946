"""Scale benchmark: per-epoch selection and state-update time, and state bytes per sample, for large N.

    python experiments/scale_selection.py [--sizes 1e6 1e7 1e8]

Writes experiments/results/scale_selection.md. Selection = TED's random drop among the lowest
``ceil(round(pN)/q)`` scores at p = 0.5, q = 0.5; update = folding one full epoch of observations (every
kept sample once) into the scores. Times are the best of ``--repeats`` runs on this machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lightning_ted.methods import TED
from lightning_ted.selection import epoch_generator
from lightning_ted.state import COLUMNS, Observations, ScoreState

RESULTS = Path(__file__).resolve().parent / "results"


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _measure(n: int, method: TED, repeats: int) -> str:
    state = ScoreState(n)
    state.score.copy_(torch.rand(n, generator=epoch_generator(0, 0)))
    state.seen.fill_(1)
    t_sel, sel = _best(lambda: method.select(state, 0.5, epoch_generator(0, 1)), repeats)
    kept = sel.indices
    obs = Observations(kept, torch.rand((kept.numel(), len(COLUMNS))))
    t_upd, _ = _best(lambda: method.update(state, obs, epoch=1), repeats)
    sel_bytes = kept.element_size()  # indices only: the weights are one scalar plus a split point
    return f"| {n:.0e} | {t_sel:.3f} | {t_upd:.3f} | {state.nbytes() / n:.0f} | {sel_bytes} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    method = TED()
    lines = [
        "| N | selection (s) | update of one epoch (s) | persistent state bytes/sample | selection bytes/kept sample |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in (int(s) for s in args.sizes):
        lines.append(_measure(n, method, args.repeats))
        print(lines[-1], flush=True)
    text = f"torch {torch.__version__}, {torch.get_num_threads()} threads\n\n" + "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scale_selection.md").write_text(text)


if __name__ == "__main__":
    main()
