"""Compare every pruning method on the same seeds: accuracy against compute saved, per task.

    python experiments/compare.py                       # the full grid (about 90 minutes on 2 cores)
    python experiments/compare.py --quick               # one seed, a few epochs, small subsets
    python experiments/compare.py --tasks noisy_mnist --methods full ted infobatch --ratios 0.7

For each task, every method trains the same model from the same initialisation on the same seeds at
target ratios 0.3 / 0.5 / 0.7 under one roller-coaster schedule (so all methods get the same per-epoch
target; InfoBatch's ratio is the share of its candidates it drops, so it saves less). Writes
``experiments/results/<task>.md`` and ``.csv`` (achieved fraction of sample-passes saved, test and
validation accuracy mean and standard deviation, wall time, and speedup against ``full`` on the same
seed in the same run) and ``<task>_accuracy_vs_saved.png``. On ``noisy_mnist`` (20% of training labels
flipped with a fixed seed) it also reports the share of flipped labels among the sample-passes each
method pruned.

Hyper-parameters were not tuned on the test split; the validation split (carved from train) is what
``experiments/results/ablation_*.md`` reads.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import TensorDataset

from lightning_ted import (
    METHODS,
    DynamicPruningDataModule,
    RollerCoasterSchedule,
    build_method,
    pruned_loss,
)
from lightning_ted.observe.plots import plot_accuracy_vs_saved
from lightning_ted.research import TEDVariant
from lightning_ted.zoo.datasets import load_image_classification, load_sst2
from lightning_ted.zoo.demo import timed_fit
from lightning_ted.zoo.models import SmallCNN, TextCNN

RESULTS = Path(__file__).resolve().parent / "results"
ALL_METHODS = [
    "full",
    "random",
    "infobatch",
    "ucb",
    "epsilon_greedy",
    "el2n",
    "grand",
    "forgetting",
    "ccs",
    "cat",
    "ted",
]
NOISE_RATE, NOISE_SEED = 0.2, 1234
DEFAULT_BETA = 0.1  # roller-coaster beta: s = 0.5 then saves 35.7% of sample-passes over 8 epochs


# ------------------------------------------------------------------------------------------ tasks
@dataclass
class TaskData:
    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    vocab_size: int = 0
    noisy: torch.Tensor | None = None  # bool mask over train: label was flipped


def _split(ds: TensorDataset, n_train: int, n_val: int) -> tuple[TensorDataset, TensorDataset]:
    """First ``n_train`` samples train, the next ``n_val`` validate (carved from the train split)."""
    x, y = ds.tensors
    held_out = slice(n_train, n_train + n_val)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[held_out], y[held_out])


TASKS = ("mnist", "fashion", "sst2")  # each also as noisy_<task>: 20% of training labels flipped


def _flip_labels(train: TensorDataset, num_classes: int) -> tuple[TensorDataset, torch.Tensor]:
    """Flip each training label with probability NOISE_RATE to a uniformly drawn other class (seed NOISE_SEED)."""
    x, y = train.tensors
    g = torch.Generator().manual_seed(NOISE_SEED)
    noisy = torch.rand(len(y), generator=g) < NOISE_RATE
    shift = torch.randint(1, num_classes, (len(y),), generator=g)  # a different class, uniformly
    return TensorDataset(x, torch.where(noisy, (y + shift) % num_classes, y)), noisy


def load_task(name: str, n_train: int, n_val: int, n_test: int, root: str | None = None) -> TaskData:
    """``mnist``, ``fashion`` or ``sst2``, or ``noisy_<one of them>``; validation is carved from train."""
    base = name.removeprefix("noisy_")
    if base in ("mnist", "fashion"):
        dataset = "FashionMNIST" if base == "fashion" else "MNIST"
        full = load_image_classification(dataset, root, train=True, limit=n_train + n_val)
        train, val = _split(full, n_train, n_val)
        test = load_image_classification(dataset, root, train=False, limit=n_test)
        task = TaskData(name, train, val, test, 10)
    elif base == "sst2":
        full, vocab = load_sst2(root, "train")
        train, val = _split(full, min(n_train, len(full) - n_val), n_val)
        test, _ = load_sst2(root, "test", vocab=vocab)
        test = TensorDataset(*(t[:n_test] for t in test.tensors))
        task = TaskData(name, train, val, test, 2, vocab_size=len(vocab) + 2)
    else:
        raise ValueError(f"unknown task {name!r}; choose from {TASKS} or noisy_<task>")
    if name != base:
        task.train, task.noisy = _flip_labels(task.train, task.num_classes)
    return task


def is_text(task: TaskData) -> bool:
    return task.vocab_size > 0


def build_net(task: TaskData) -> nn.Module:
    return TextCNN(task.vocab_size, task.num_classes) if is_text(task) else SmallCNN(task.num_classes)


class TaskModule(L.LightningModule):
    """Per-sample cross-entropy through ``pruned_loss``; cosine LR over epochs (step counts vary by method)."""

    def __init__(self, net: nn.Module, lr: float, epochs: int, adam: bool) -> None:
        super().__init__()
        self.net, self.lr, self.epochs, self.adam = net, lr, epochs, adam

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*inputs)

    def per_sample_loss(self, batch) -> torch.Tensor:
        """Cross-entropy of every sample (``reduction="none"``); TED's forward-only pass calls it too.
        The batch is ``(*inputs, labels)``: one input for images, ``(tokens or states, mask)`` for text."""
        *inputs, y = batch
        return F.cross_entropy(self(*inputs), y, reduction="none")

    def training_step(self, batch, batch_idx):
        return pruned_loss(self, self.per_sample_loss(batch))

    def configure_optimizers(self):
        if self.adam:
            opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-4)
        else:
            opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


@torch.no_grad()
def accuracy(net: nn.Module, data: TensorDataset, batch: int = 1000) -> float:
    """Test accuracy (%) of ``net`` on ``(*inputs, labels)`` tensors, ``batch`` rows at a time."""
    net.eval()
    *inputs, y = data.tensors
    with torch.no_grad():
        correct = sum(
            int((net(*(t[i : i + batch] for t in inputs)).argmax(1) == y[i : i + batch]).sum())
            for i in range(0, len(y), batch)
        )
    return 100.0 * correct / len(y)


def parse_method(spec: str):
    """``"ted"`` or a variant such as ``"ted:score=cross,q=1"`` (constructor keywords after the colon; TED's
    variants are built by the research class :class:`~lightning_ted.research.TEDVariant`)."""
    name, _, options = spec.partition(":")
    if not options:
        return build_method(name)
    kwargs = {}
    for item in options.split(","):
        key, _, value = item.partition("=")
        try:
            kwargs[key] = int(value) if value.isdigit() else float(value) if "." in value else value
            if value in ("true", "false"):
                kwargs[key] = value == "true"
            if value == "none":
                kwargs[key] = None
        except ValueError:
            kwargs[key] = value
    return (TEDVariant if name == "ted" else METHODS[name])(**kwargs)


class PrunedNoise(Callback):
    """Counts pruned sample-passes and how many of them carry a flipped label."""

    def __init__(self, noisy: torch.Tensor | None) -> None:
        self.noisy = noisy
        self.pruned = self.noisy_pruned = 0

    def on_train_epoch_start(self, trainer, pl_module):
        if self.noisy is None:
            return
        kept = torch.zeros(len(self.noisy), dtype=torch.bool)
        kept[trainer.datamodule.current_selection.indices] = True
        self.pruned += int((~kept).sum())
        self.noisy_pruned += int((~kept & self.noisy).sum())


# ------------------------------------------------------------------------------------------ runs
@dataclass
class Job:
    task: str
    method: str
    ratio: float
    seed: int


@dataclass
class Settings:
    epochs: int
    beta: float
    batch_size: int
    n_train: int
    n_val: int
    n_test: int
    threads: int
    root: str | None = None


@dataclass
class Outcome:
    task: str
    method: str
    ratio: float
    seed: int
    saved: float
    test_acc: float
    val_acc: float
    seconds: float
    noisy_share_pruned: float = float("nan")


_TASKS: dict[str, TaskData] = {}


def run_job(job: Job, settings: Settings) -> Outcome:
    """Train one (task, method, ratio, seed) and measure it."""
    torch.set_num_threads(settings.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if job.task not in _TASKS:
        _TASKS[job.task] = load_task(job.task, settings.n_train, settings.n_val, settings.n_test, settings.root)
    task = _TASKS[job.task]
    L.seed_everything(job.seed, verbose=False)
    net = build_net(task)
    text = is_text(task)
    model = TaskModule(net, lr=2e-3 if text else 0.05, epochs=settings.epochs, adam=text)
    method = parse_method(job.method)
    dm = DynamicPruningDataModule(
        task.train,
        method=method,
        schedule=RollerCoasterSchedule(ratio=job.ratio, beta=settings.beta),
        batch_size=settings.batch_size,
        seed=job.seed,
    )
    noise = PrunedNoise(task.noisy)
    _, seconds = timed_fit(model, dm, settings.epochs, callbacks=[noise])
    share = noise.noisy_pruned / noise.pruned if noise.pruned else float("nan")
    return Outcome(
        job.task,
        job.method,
        job.ratio,
        job.seed,
        dm.saved_fraction(settings.epochs - 1),
        accuracy(net, task.test),
        accuracy(net, task.val),
        seconds,
        share,
    )


def _run_all(jobs: list[Job], settings: Settings, workers: int, on_done=None) -> list[Outcome]:
    """Run the jobs (in ``workers`` processes); ``on_done(outcome)`` is called as each one finishes."""

    def finished(outcome: Outcome) -> Outcome:
        print(_progress(outcome), flush=True)
        if on_done is not None:
            on_done(outcome)
        return outcome

    if workers <= 1:
        return [finished(run_job(job, settings)) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_job, job, settings) for job in jobs]
        return [finished(f.result()) for f in futures]


def _progress(o: Outcome) -> str:
    return (
        f"{o.task:12s} {o.method:15s} s={o.ratio:.1f} seed={o.seed} saved={100 * o.saved:5.1f}% "
        f"test={o.test_acc:6.2f} val={o.val_acc:6.2f} {o.seconds:6.1f}s"
    )


# ------------------------------------------------------------------------------------------ tables
def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(task: str, outcomes: list[Outcome]) -> list[dict]:
    """One row per (method, ratio): means over seeds; speedup against ``full`` on the same seed."""
    full = {o.seed: o for o in outcomes if o.method == "full"}
    full_acc = statistics.mean(o.test_acc for o in full.values()) if full else float("nan")
    groups: dict[tuple[str, float], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.method, 0.0 if o.method == "full" else o.ratio), []).append(o)
    rows = []
    for (method, ratio), runs in groups.items():
        acc, acc_sd = _mean_std([r.test_acc for r in runs])
        val, _ = _mean_std([r.val_acc for r in runs])
        speedups = [full[r.seed].seconds / r.seconds for r in runs if r.seed in full]
        shares = [r.noisy_share_pruned for r in runs if not math.isnan(r.noisy_share_pruned)]
        rows.append(
            {
                "task": task,
                "method": method,
                "ratio": ratio,
                "seeds": len(runs),
                "saved": statistics.mean(r.saved for r in runs),
                "test_acc": acc,
                "test_acc_std": acc_sd,
                "delta_vs_full": acc - full_acc,
                "val_acc": val,
                "seconds": statistics.mean(r.seconds for r in runs),
                "speedup": statistics.mean(speedups) if speedups else float("nan"),
                "noisy_share_pruned": statistics.mean(shares) if shares else float("nan"),
            }
        )
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    rows.sort(key=lambda r: (r["ratio"], order.get(r["method"], 99)))
    return rows


def markdown(rows: list[dict], noisy: bool) -> str:
    head = "| method | target s | saved | test acc (%) | Δ vs full | val acc (%) | time (s) | speedup vs full |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
    if noisy:
        head += " flipped share of pruned |"
        rule += "---:|"
    lines = [head, rule]
    for r in rows:
        line = (
            f"| {r['method']} | {r['ratio']:.1f} | {100 * r['saved']:.1f}% "
            f"| {r['test_acc']:.2f} ± {r['test_acc_std']:.2f} | {r['delta_vs_full']:+.2f} | {r['val_acc']:.2f} "
            f"| {r['seconds']:.1f} | {r['speedup']:.2f}x |"
        )
        if noisy:
            share = r["noisy_share_pruned"]
            line += " — |" if math.isnan(share) else f" {100 * share:.1f}% |"
        lines.append(line)
    return "\n".join(lines)


def write(task: str, rows: list[dict], outcomes: list[Outcome], header: str, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = header + "\n\n" + markdown(rows, noisy=task.startswith("noisy_")) + "\n"
    (out / f"{task}.md").write_text(text)
    with open(out / f"{task}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out / f"{task}_runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(outcomes[0])))
        writer.writeheader()
        writer.writerows(asdict(o) for o in outcomes)
    plot_accuracy_vs_saved(rows, out / f"{task}_accuracy_vs_saved.png", title=header.split(";")[0])
    return text


# ------------------------------------------------------------------------------------------ main
SIZES = {"mnist": 10000, "fashion": 10000, "sst2": 6000}  # noisy_<task> uses the size of <task>


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["mnist", "noisy_mnist", "fashion", "sst2"])
    parser.add_argument("--methods", nargs="+", default=ALL_METHODS)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA, help="roller-coaster beta")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=None, help="training samples per task (default per task)")
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (each gets cores / workers threads)")
    parser.add_argument("--quick", action="store_true", help="one seed, 3 epochs, 1000 training samples, s=0.5")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.ratios = args.seeds[:1], 3, [0.5]
        args.train_size, args.val_size, args.test_size = args.train_size or 1000, 200, 500
    unknown = [m for m in args.methods if m.partition(":")[0] not in ALL_METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {ALL_METHODS}")
    threads = max(1, torch.get_num_threads() // max(1, args.workers))
    for task in args.tasks:
        settings = Settings(
            epochs=args.epochs,
            beta=args.beta,
            batch_size=args.batch_size,
            n_train=args.train_size or SIZES.get(task.removeprefix("noisy_"), 10000),
            n_val=args.val_size,
            n_test=args.test_size,
            threads=threads,
            root=args.data_root,
        )
        jobs = [
            Job(task, method, ratio, seed)
            for seed in args.seeds
            for method in args.methods
            for ratio in ([0.0] if method == "full" else args.ratios)
        ]
        start = time.perf_counter()
        outcomes = _run_all(jobs, settings, args.workers)
        header = (
            f"{task}: {settings.n_train} training samples, {args.epochs} epochs, batch {args.batch_size}, "
            f"roller-coaster beta={args.beta}, seeds {args.seeds}, {args.workers} parallel runs x {threads} threads, "
            f"torch {torch.__version__}; grid took {time.perf_counter() - start:.0f} s"
        )
        print(write(task, summarise(task, outcomes), outcomes, header, args.out))


if __name__ == "__main__":
    main()
