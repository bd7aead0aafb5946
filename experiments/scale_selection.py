"""Scale benchmark: per-epoch selection and state-update time, and state bytes per sample, for large N.

    python experiments/scale_selection.py [--sizes 1e6 1e7 1e8]

Writes experiments/results/scale_selection.md. Selection = TED's random drop among the lowest
``ceil(round(pN)/q)`` scores with q = 0.5, at p = 0.5 (every sample is a candidate) and p = 0.3 (the
candidates are 60% of the data, so an exact k-th smallest score is needed too); update = folding one
full epoch of observations (every kept sample of the p = 0.5 epoch once) into the scores. Times are the
best of ``--repeats`` runs on this machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lightning_ted.core.selection import epoch_generator
from lightning_ted.core.state import COLUMNS, Observations, ScoreState
from lightning_ted.methods import TED

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
    t_sel3, _ = _best(lambda: method.select(state, 0.3, epoch_generator(0, 1)), repeats)
    t_sel, sel = _best(lambda: method.select(state, 0.5, epoch_generator(0, 1)), repeats)
    kept = sel.indices
    obs = Observations(kept, torch.rand((kept.numel(), len(COLUMNS))))
    t_upd, _ = _best(lambda: method.update(state, obs, epoch=1), repeats)
    sel_bytes = kept.element_size()  # indices only: the weights are one scalar plus a split point
    packed = obs.pack()  # what an epoch buffers per observed sample
    obs_bytes = packed.element_size() * packed.shape[1]
    times = [f"{t:.3f}" for t in (t_sel, t_sel3, t_upd)]
    cells = [f"{n:.0e}", *times, f"{state.nbytes() / n:.0f}", obs_bytes, sel_bytes]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    method = TED()
    lines = [
        "| N | selection p=0.5 (s) | selection p=0.3 (s) | update of one epoch (s) | state bytes/sample "
        "| buffered bytes/observation | selection bytes/kept sample |",
        "|---:|---:|---:|---:|---:|---:|---:|",
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
