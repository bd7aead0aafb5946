"""Worker for the streamed-path DDP test: trains on a litdata dataset with pruning on N CPU processes.

Run as ``python stream_ddp_worker.py DATA_DIR OUT_DIR DEVICES WORKERS``; Lightning's ``ddp`` strategy
re-launches it for the other ranks. Each rank writes ``OUT_DIR/rank{r}.pt`` with what it trained.
"""

from __future__ import annotations

import sys
from pathlib import Path

import litdata
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from stream_helpers import fit_streamed  # noqa: E402

EPOCHS = 3


def main(data: str, out: str, devices: int, workers: int) -> None:
    torch.set_num_threads(1)
    dataset = litdata.StreamingDataset(data, shuffle=True, seed=7)  # built before DDP starts, as users do
    strategy = {"strategy": "ddp", "devices": devices} if devices > 1 else {}
    dm, rec, trainer, _ = fit_streamed(dataset, epochs=EPOCHS, num_workers=workers, trainer_kwargs=strategy)
    torch.save(
        {
            "kept": rec.kept,
            "seen": {e: torch.cat(v) for e, v in rec.seen.items()},
            "weights": {e: torch.cat(v) for e, v in rec.weights.items()},
            "score": dm.state.score,
            "seen_count": dm.state.seen,
            "kept_history": dm.kept_history,
            "steps": trainer.global_step,
            "world_size": trainer.world_size,
        },
        Path(out) / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
