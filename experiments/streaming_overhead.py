"""Overhead and savings of the streamed path over litdata's StreamingDataset (issue 25), in one run.

    nice -n 10 python experiments/streaming_overhead.py                 # 30k CIFAR-10 images, 3 epochs, ~10 minutes
    nice -n 10 python experiments/streaming_overhead.py --n 20000 --repeats 1   # quicker

Writes CIFAR-10's training images (uint8, 32 x 32 x 3) with ``litdata.optimize`` into a temporary folder,
then trains the same small CNN through ``Trainer.fit`` (batch 128, one loader worker) on:

- ``litdata``: a plain LightningModule on litdata's own ``StreamingDataLoader`` (no pruning at all);
- ``stream 0%``: ``DynamicPruningDataModule`` on the same ``StreamingDataset`` with ``method="full"``:
  the streamed path's own cost (ids, the per-sample filter, index and weight batches, the callback);
- ``stream TED 30% / 50%``: TED with ``ConstantSchedule(r, warmup_epochs=1, anneal=0)``.

After one discarded warm-up run of each, runs alternate (litdata, stream 0%, 30%, 50%, litdata, ...) so
load on the machine hits all alike, and after each round the data path alone is timed (no model). The page
cache is dropped before every run when this process may (root): each run's first epoch reads the chunks
from disk; later epochs may find them in the page cache (the dataset is 90 MB).
Reported: wall-clock and CPU seconds of ``fit`` (medians of the repeats), the overhead ratio stream 0% / litdata,
the optimizer steps and the fraction saved against full data, the steps the map-style path takes for
the same kept counts, and the wall-clock ratio against ``stream 0%``. Writes
``experiments/results/streaming_overhead.md``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_ted import ConstantSchedule, DynamicPruningDataModule, pruned_loss
from lightning_ted.zoo.datasets import default_data_root

RESULTS = Path(__file__).resolve().parent / "results"
_IMAGES: np.ndarray | None = None
_LABELS: np.ndarray | None = None


def _item(i: int) -> dict:
    return {"x": _IMAGES[i], "y": int(_LABELS[i])}


def write_dataset(out: Path, n: int) -> None:
    """CIFAR-10's first ``n`` (shuffled) training images as litdata chunks in ``out``."""
    import litdata

    global _IMAGES, _LABELS
    with np.load(default_data_root() / "CIFAR-10" / "cifar10_train.npz") as npz:
        order = np.random.default_rng(0).permutation(len(npz["y"]))[:n]
        _IMAGES, _LABELS = npz["x"][order], npz["y"][order]
    before = multiprocessing.get_start_method(allow_none=True)
    try:  # optimize sets the process-wide start method; fork keeps the loaded arrays and is put back after
        litdata.optimize(
            fn=_item, inputs=list(range(n)), output_dir=str(out), chunk_bytes="8MB", num_workers=1, start_method="fork"
        )
    finally:
        multiprocessing.set_start_method(before, force=True)


class Net(L.LightningModule):
    def __init__(self, pruned: bool) -> None:
        super().__init__()
        self.pruned = pruned
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float() / 255.0
        return self.head(self.body(x).mean(dim=(2, 3)))

    def training_step(self, batch: dict, batch_idx: int):
        losses = F.cross_entropy(self(batch["x"]), batch["y"], reduction="none")
        return pruned_loss(self, losses) if self.pruned else losses.mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the loader workers of past epochs): unlike
    wall-clock time, barely moved by other work on a shared machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(kind: str, data: Path, args: argparse.Namespace, ratio: float = 0.0) -> dict:
    import litdata

    dropped = drop_page_cache()
    L.seed_everything(0, verbose=False)
    dataset = litdata.StreamingDataset(str(data), shuffle=True, seed=0)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    if kind == "litdata":
        loader = litdata.StreamingDataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
        trainer.fit(Net(pruned=False), train_dataloaders=loader)
        kept = [args.n] * args.epochs
    else:
        dm = DynamicPruningDataModule(
            dataset,
            method="full" if ratio == 0 else "ted",
            schedule=ConstantSchedule(ratio, warmup_epochs=1, anneal=0.0),
            batch_size=args.batch_size,
            num_workers=args.workers,
        )
        trainer.fit(Net(pruned=True), datamodule=dm)
        kept = [int(k) for k in dm.kept_history[: args.epochs]]
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    map_style_steps = sum(math.ceil(k / args.batch_size) for k in kept)  # one process, same kept counts
    return {
        "kind": kind,
        "ratio": ratio,
        "seconds": seconds,
        "cpu": cpu,
        "steps": trainer.global_step,
        "map_steps": map_style_steps,
        "kept": sum(kept),
        "cache_dropped": dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="alternating litdata / stream 0%% pairs")
    parser.add_argument("--out", type=Path, default=RESULTS / "streaming_overhead.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cifar10_litdata"
        write_dataset(data, args.n)
        size_mb = sum(f.stat().st_size for f in data.iterdir()) / 2**20
        run("litdata", data, args)  # warm-up, discarded: first-call costs (imports, allocator) hit neither side
        run("stream", data, args)
        runs, loaders = [], []
        for _ in range(args.repeats):
            runs += [run("litdata", data, args), run("stream", data, args)]
            runs += [run("stream", data, args, 0.3), run("stream", data, args, 0.5)]
            loaders.append(loader_only(data, args))
    write_table(runs, loaders, args, size_mb)


def loader_only(data: Path, args: argparse.Namespace) -> tuple[float, float]:
    """CPU seconds to iterate one epoch of batches, no model: litdata's loader, then the streamed path's at
    ratio 0 (ids, the per-sample filter, index and weight tensors, remainders, checks). Page cache warm."""
    import litdata

    loader = litdata.StreamingDataLoader(
        litdata.StreamingDataset(str(data), shuffle=True, seed=0), batch_size=args.batch_size, num_workers=args.workers
    )
    start = _cpu_seconds()
    for _ in loader:
        pass
    plain = _cpu_seconds() - start
    dm = DynamicPruningDataModule(
        litdata.StreamingDataset(str(data), shuffle=True, seed=0),
        method="full",
        schedule=ConstantSchedule(0.0, max_epochs=1),
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    dm.setup("fit")
    start = _cpu_seconds()
    for _ in dm.train_dataloader():
        pass
    return plain, _cpu_seconds() - start


def write_table(runs: list[dict], loaders: list[tuple[float, float]], args: argparse.Namespace, size_mb: float) -> None:
    def median(kind: str, ratio: float, key: str = "seconds") -> float:
        return statistics.median(r[key] for r in runs if r["kind"] == kind and r["ratio"] == ratio)

    base, stream0 = median("litdata", 0.0), median("stream", 0.0)
    base_cpu, stream0_cpu = median("litdata", 0.0, "cpu"), median("stream", 0.0, "cpu")
    full_steps = next(r["steps"] for r in runs if r["kind"] == "litdata")
    rows = [
        "| run | fit wall s (median) | wall vs litdata | wall vs stream 0% | CPU s (median) | CPU vs litdata "
        "| CPU vs stream 0% | optimizer steps | steps saved | map-style steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, kind, ratio in [
        ("litdata alone", "litdata", 0.0),
        ("stream 0% (full)", "stream", 0.0),
        ("stream TED 30%", "stream", 0.3),
        ("stream TED 50%", "stream", 0.5),
    ]:
        r = next(x for x in runs if x["kind"] == kind and x["ratio"] == ratio)
        sec, cpu = median(kind, ratio), median(kind, ratio, "cpu")
        rows.append(
            f"| {label} | {sec:.2f} | {sec / base:.3f} | {sec / stream0:.3f} | {cpu:.2f} | {cpu / base_cpu:.3f} | "
            f"{cpu / stream0_cpu:.3f} | {r['steps']} | "
            f"{1 - r['steps'] / full_steps:.3f} | {r['map_steps']} |"
        )
    plain = statistics.median(p for p, _ in loaders)
    mine = statistics.median(m for _, m in loaders)
    each = ", ".join(f"{r['kind']} {int(r['ratio'] * 100)}%: {r['seconds']:.2f}s ({r['cpu']:.2f} CPU s)" for r in runs)
    text = "\n".join(
        [
            "# Streamed path over litdata: overhead at ratio 0 and savings when pruning",
            "",
            f"CIFAR-10 train, first {args.n} images (shuffled) written by `litdata.optimize` ({size_mb:.0f} MB); "
            f"{args.epochs} epochs, batch {args.batch_size}, {args.workers} loader worker(s), small CNN, CPU "
            f"({os.cpu_count()} cores, shared), `torch.set_num_threads(1)`. Page cache dropped before every run: "
            f"{all(r['cache_dropped'] for r in runs)}. Pruned runs: TED, `ConstantSchedule(r, warmup_epochs=1, "
            "anneal=0)` (the first epoch trains on everything).",
            "",
            *rows,
            "",
            f"Overhead ratio at 0% (stream / litdata alone, medians of {args.repeats} alternating runs): "
            f"**{stream0 / base:.3f}** in wall-clock time, **{stream0_cpu / base_cpu:.3f}** in CPU time. "
            "Steps saved are against litdata alone's full-data steps; map-style steps are "
            "what the map-style path runs for the same kept counts on one process (ceil(kept / batch) per epoch).",
            "",
            f"Data path alone (one epoch of batches, no model, page cache warm; CPU seconds, medians of "
            f"{len(loaders)}): litdata's loader {plain:.2f} s, the streamed path at 0% {mine:.2f} s (ratio "
            f"{mine / plain:.3f}, {(mine - plain) / args.n * 1e6:.1f} us per sample). Training adds the per-step "
            "pruning bookkeeping shared with the map-style path (training_step's dict output, pruned_loss's weights "
            "and gradient hook, the datamodule's batch hooks, the callback).",
            "",
            f"Every run: {each}.",
            "",
            "Regenerate: `nice -n 10 python experiments/streaming_overhead.py`.",
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
