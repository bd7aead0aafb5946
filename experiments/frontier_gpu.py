"""The frontier benchmark on one GPU: CIFAR-10 (all 50k), a ResNet-9-style net in bf16, data on the device.

    python experiments/frontier_gpu.py                      # budget points + full/infobatch/seta/ted at 50/70%
    python experiments/frontier_gpu.py --tiny               # CPU smoke test: 300 images, 8 epochs, tiny widths

The whole training split lives on the GPU as uint8 (150 MB); each batch is gathered there, cropped and
flipped there (CIFAR10Data's batched augmentation) and normalised, so the host only hands over indices.
The net is the well-known ResNet-9 layout (prep conv, three stages of conv-BN-ReLU + max-pool with a
residual pair after the first and last, global max-pool, a scaled linear head) in bf16 autocast, SGD
(Nesterov) with label smoothing and a linear warm-up / linear decay spanning each run's own
epochs, set per batch from the epoch progress (so a pruned run or a budget point decays fully). The grid,
paired seeds, gains and the JSONL cache are those of ``frontier.py``; results go to
``experiments/results/frontier_cifar10_gpu.md`` / ``.csv`` / ``.png``. Sized for < 8 minutes on one H200
(2 seeds; budget points 1.5/1/0.7/0.5/0.3 of E = 10 epochs; full, infobatch, seta, ted at 50% and 70%).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from pathlib import Path

import frontier
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from lightning_ted import METHODS, ConstantSchedule, DynamicPruningDataModule, pruned_loss
from lightning_ted.zoo.data import normalize_images
from lightning_ted.zoo.datasets import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from lightning_ted.zoo.demo import timed_fit
from lightning_ted.zoo.models import ResNet9

GPU = frontier.TaskSpec("cifar10_gpu", "cifar10", 45000, 5000, 10, 0.2, 512, width=(64, 128, 256, 512))
TINY = frontier.TaskSpec("cifar10_gpu", "cifar10", 300, 100, 8, 0.1, 64, width=(8, 16, 16, 16), n_test=200)
METHODS_GPU = ["full", "infobatch", "seta", "ted"]
TARGETS_GPU = (0.5, 0.7)


class GpuModule(L.LightningModule):
    """Label-smoothed per-sample cross-entropy; SGD, LR warmed up over the first 20% of the run, then to 0."""

    def __init__(self, net: nn.Module, lr: float, weight_decay: float = 5e-4) -> None:
        super().__init__()
        self.net, self.lr, self.weight_decay = net, lr, weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def per_sample_loss(self, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x).float(), y, reduction="none", label_smoothing=0.2)

    def training_step(self, batch, batch_idx):
        return pruned_loss(self, self.per_sample_loss(batch))

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.ndim > 1]
        other = [p for p in self.parameters() if p.ndim <= 1]
        opt = torch.optim.SGD(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": other, "weight_decay": 0.0}],
            lr=self.lr, momentum=0.9, nesterov=True,
        )  # fmt: skip
        return opt

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """LR from the run's progress in epochs (InfoBatch and SeTa keep a score-dependent number of samples,
        so the step count is unknown up front): linear warm-up over the first 20%, then linear decay to 0."""
        trainer = self.trainer
        progress = (trainer.current_epoch + batch_idx / max(1, trainer.num_training_batches)) / trainer.max_epochs
        factor = progress / 0.2 if progress < 0.2 else (1.0 - progress) / 0.8
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = self.lr * max(factor, 0.0) + 1e-6


@torch.no_grad()
def accuracy(net: nn.Module, data: TensorDataset, device: torch.device, batch: int = 2000) -> float:
    """Accuracy (%) in bf16 autocast on ``device``; ``data`` holds uint8 images already on the device."""
    net.eval()
    x, y = data.tensors
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        for i in range(0, len(y), batch):
            xb = normalize_images(x[i : i + batch], CIFAR10_MEAN, CIFAR10_STD).contiguous(
                memory_format=torch.channels_last
            )
            correct += (net(xb).argmax(1) == y[i : i + batch]).sum()
    return 100.0 * int(correct) / len(y)  # one sync per evaluation


_DATA: dict[str, tuple] = {}


def device_data(spec: frontier.TaskSpec, device: torch.device):
    """Split once per process (same carve as CIFAR10Data: fixed generator), then move uint8 tensors to ``device``."""
    if spec.name not in _DATA:
        frontier._DATA["cifar10_raw"] = (load_cifar10(train=True), load_cifar10(train=False))
        dm = frontier._CachedCIFAR(limit=spec.n_train, val_size=spec.n_val, test_limit=spec.n_test)
        dm.setup("fit")
        splits = (dm.train, dm.val, dm.test)
        _DATA[spec.name] = tuple(TensorDataset(*(t.to(device) for t in ds.tensors)) for ds in splits)
    return _DATA[spec.name]


def run_job(job: frontier.Job, spec: frontier.TaskSpec, accelerator: str, precision: str) -> frontier.Result:
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    train, val, test = device_data(spec, device)
    if job.method == "budget":
        epochs, method, ratio = int(round(job.level * spec.epochs)), "full", 0.0
    else:
        epochs, method, ratio = spec.epochs, job.method, frontier.schedule_ratio(job.method, job.level, spec)
    L.seed_everything(job.seed, verbose=False)
    net = ResNet9(spec.width).to(memory_format=torch.channels_last)
    model = GpuModule(net, spec.lr)
    pruner = METHODS[method](max_epochs=epochs) if method == "seta" else METHODS[method]()
    schedule = ConstantSchedule(ratio=ratio, warmup_epochs=frontier.WARMUP, anneal=frontier.ANNEAL)
    inner = frontier._cifar_train_module(train, spec, job.seed)
    dm = DynamicPruningDataModule(datamodule=inner, method=pruner, schedule=schedule, seed=job.seed)
    _, seconds = timed_fit(model, dm, epochs, accelerator=accelerator, precision=precision, limit_val_batches=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    saved = 1.0 - epochs / spec.epochs if job.method == "budget" else dm.saved_fraction(epochs - 1)
    net.to(device)
    result = frontier.Result(
        spec.name, job.method, job.level, job.seed, epochs, ratio, saved,
        accuracy(net, test, device), accuracy(net, val, device), seconds, spec.fingerprint(),
    )  # fmt: skip
    return frontier.stamped(result, job, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test at a tiny size")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=frontier.RESULTS)
    args = parser.parse_args(argv)
    spec = TINY if args.tiny else GPU
    accelerator = "cpu" if args.tiny else "gpu"
    frontier.MODEL_LABELS[spec.name] = f"ResNet-9 {spec.width} (bf16 autocast, uint8 data + augmentation on device)"
    frontier.REGENERATE[spec.name] = "python experiments/frontier_gpu.py" + (" --tiny" if args.tiny else "")
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device here; run with --tiny for the CPU smoke test")
    if not args.tiny:
        torch.backends.cudnn.benchmark = True
    precision = "bf16-mixed"
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    methods = [m for m in METHODS_GPU if m in METHODS]
    seeds = list(range(args.seeds))
    done = {k: r for k, r in frontier.read_cache(args.out, spec.name, spec).items() if not r.stale}
    cells = frontier.grid(methods, frontier.BUDGETS, TARGETS_GPU, seeds, seeds)
    todo = [frontier.Job(spec.name, m, lvl, s) for m, lvl, s in cells]
    todo = [j for j in todo if j.key not in done]
    print(f"{spec.name}: {len(done)} runs cached, {len(todo)} to run", flush=True)
    start = time.perf_counter()
    for job in todo:
        r = run_job(job, spec, accelerator, precision)
        with open(frontier.cache_path(args.out, spec.name), "a") as fh:
            fh.write(frontier.json.dumps(frontier.asdict(r)) + "\n")
        print(
            f"{r.method:9s} {r.level:<4} seed={r.seed} epochs={r.epochs:2d} saved={100 * r.saved:5.1f}% "
            f"test={r.test_acc:6.2f} val={r.val_acc:6.2f} {r.seconds:6.1f}s (total {time.perf_counter() - start:.0f}s)",
            flush=True,
        )
    results = list(frontier.read_cache(args.out, spec.name, spec).values())
    print(frontier.write_report(spec, results, args.out, time.perf_counter() - start if todo else None))


if __name__ == "__main__":
    main()
