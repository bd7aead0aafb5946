"""Worker for the DDP tests: trains the MNIST CNN with TED on N CPU processes and saves what each rank saw.

Run as ``python tests/ddp_worker.py OUT_DIR DEVICES BATCH_SIZE [CKPT]``; Lightning's ``ddp`` strategy
re-launches this script for the other ranks. Each rank writes ``OUT_DIR/rank{r}.pt``. Without ``CKPT`` the
run also saves checkpoints after epoch 1 (``OUT_DIR/epoch1.ckpt``), after its last batch
(``OUT_DIR/last_batch.ckpt``) and in the middle of epoch 2 (``OUT_DIR/mid.ckpt``); with ``CKPT`` it
resumes from that checkpoint. ``TED_REFERENCE`` in the environment picks TED's reference (default ``ema``);
``TED_SCHEDULE=budget`` trains under ``GeneralizationBudgetSchedule`` instead of the roller coaster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from test_end_to_end import EpochRecorder  # noqa: E402
from test_resume import SaveAt  # noqa: E402

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule, TEDPruningCallback  # noqa: E402
from lightning_ted.research import GeneralizationBudgetSchedule, TEDVariant  # noqa: E402
from lightning_ted.zoo.datasets import load_image_classification  # noqa: E402
from lightning_ted.zoo.demo import ImageClassifier  # noqa: E402

N_TRAIN, EPOCHS, MID_BATCH = 2000, 4, 5


def main(out: str, devices: int, batch_size: int, ckpt: str | None = None) -> None:
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    full = load_image_classification("MNIST", train=True, limit=N_TRAIN)
    test = load_image_classification("MNIST", train=False, limit=2000)
    dm = DynamicPruningDataModule(
        full,
        # default: the per-rank EMA reference, so its checkpointing is tested too
        method=TEDVariant(reference=os.environ.get("TED_REFERENCE", "ema"), reference_size=300),
        schedule=(
            GeneralizationBudgetSchedule(saved=0.3, anneal=0.0, window=1)  # ratios from the ig readings
            if os.environ.get("TED_SCHEDULE") == "budget"
            else RollerCoasterSchedule(ratio=0.5, beta=0.5, anneal=0.0)
        ),
        test_dataset=test,
        batch_size=batch_size,
        seed=0,
    )
    recorder = EpochRecorder()
    pruning = TEDPruningCallback()
    savers = [
        SaveAt(Path(out) / "epoch1.ckpt", 1, "end"),
        SaveAt(Path(out) / "last_batch.ckpt", 1, "last"),
        SaveAt(Path(out) / "mid.ckpt", 2, MID_BATCH),
    ]
    savers = [] if ckpt else savers
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        callbacks=[pruning, recorder, *savers],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    model = ImageClassifier(lr=0.05)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"]
    torch.save(
        {
            "kept": recorder.kept,
            "seen": {e: torch.cat(v) for e, v in recorder.seen.items()},
            "score": dm.state.score,
            "seen_count": dm.state.seen,
            "ig_sums": dm.generalization.sums,
            "ig_class_sums": dm.generalization.class_sums,
            "ig_last_loss": dm.generalization.last_loss,
            "kept_history": dm.kept_history,
            "acc": acc,
            "world_size": trainer.world_size,
            "params": [p.detach().clone() for p in model.parameters()],
            "pruned_ref": dm.method.references.pruned,
        },
        Path(out) / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
