"""Mechanism benchmark for pruning scores: do the samples a score ranks lowest cost the least to remove?

For each task a full-data run (SGD, Nesterov momentum, cosine LR by epoch) is checkpointed at three
phases (after warm-up, at half of E, at 85% of E) with every rule's score state as the callback would
have built it (``score_rules.py``). From each checkpoint each rule's lowest 30% (at the middle phase also
its lowest 50% and its own selection, weights included) is removed for H = 3 epochs with the same
per-epoch order and learning rate as the full run; the change in full-training-set loss, validation loss
and accuracy against the same epochs on full data is recorded, paired by seed. On the smallest task a
few hundred random 30% masks measure how well the sum of each rule's scores over a mask predicts its cost.

    python experiments/score_validity.py --tasks mnist_mlp fashion --seeds 0 1 2
    python experiments/score_validity.py --report-only      # tables + PNG from the JSONL cache
    python experiments/score_validity.py --quick            # seconds (the test suite)
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from score_rules import OWN_RULES, RULES, ScoreTracker
from score_validity_report import append, read_cache, report, summary
from torch import nn

from lightning_ted.core.selection import epoch_generator
from lightning_ted.methods.taylor import find_head
from lightning_ted.zoo.data import normalize_images
from lightning_ted.zoo.datasets import CIFAR10_MEAN, CIFAR10_STD, load_image_classification
from lightning_ted.zoo.models import SmallCNN

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    n_train: int
    n_val: int
    model: str  # "mlp", "cnn", or a frontier task's net ("frontier": its data and model, frontier_tasks.py)
    epochs: int
    lr: float = 0.05
    batch_size: int = 128
    horizon: int = 3
    #: rules measured (None: every rule); at the middle phase, those removed at 50% and by their own selection
    rules: tuple[str, ...] | None = None
    rules_50: tuple[str, ...] | None = None
    rules_own: tuple[str, ...] | None = None
    optimizer: str = "sgd"  # "sgd" (Nesterov 0.9, weight decay 5e-4) or "adamw" (weight decay 1e-4)

    @property
    def phases(self) -> tuple[int, int, int]:
        """Epochs trained on full data before each checkpoint: warm-up (2, so every score has a reading),
        half of E, 85% of E."""
        return (2, self.epochs // 2, round(0.85 * self.epochs))

    @property
    def total_epochs(self) -> int:
        """The full run's length (its cosine LR spans it): E, or longer so the last horizon fits."""
        return max(self.epochs, self.phases[2] + self.horizon)


#: the CNN tasks' rules, sized for one shared CPU core: every TED reading and peer rule that was not clearly
#: worse than random on mnist_mlp (the ema, all and pruned references and the cosine reading were).
CNN_RULES = ("ted", "ted_cross", "ted_ratio", "ted_grad_norm", "ted_ig", "ted_horizon", "ted_gated", "ted_top",
             "loss", "el2n", "forgetting", "infobatch", "random")  # fmt: skip
QUICK_RULES = ("ted", "ted_grad_norm", "ted_ig", "ted_horizon", "ted_top", "loss", "el2n", "infobatch", "random")
WIDE_RULES = ("ted", "ted_cross", "ted_grad_norm", "ted_ig", "ted_horizon", "ted_top", "loss", "el2n", "random")
CNN_50 = ("ted", "ted_grad_norm", "ted_gated", "loss", "el2n", "random")
CNN_OWN = ("ted", "ted_gated", "infobatch")
FRONTIER_RULES = ("ted", "ted_grad_norm", "ted_horizon", "ted_ig", "ted_top", "loss", "el2n", "infobatch", "random",
                  "ted_by_class", "ted_grad_norm_by_class", "loss_by_class")  # fmt: skip
FRONTIER_50 = ("ted", "ted_grad_norm", "loss", "el2n", "random")
FRONTIER_OWN = ("ted", "ted_grad_norm", "infobatch")
#: MiniLM's 3-epoch continuations cost ~40 s each on one core: the default, the candidate and the references
SST2_RULES = ("ted", "ted_grad_norm", "loss", "el2n", "random")
TASKS = {
    "mnist_mlp": Task("mnist_mlp", "MNIST", 4000, 1000, "mlp", 10),
    "fashion": Task(
        "fashion", "FashionMNIST", 10000, 1000, "cnn", 16, rules=CNN_RULES, rules_50=CNN_50, rules_own=CNN_OWN
    ),
    # all 59k training images, fewer epochs: each sample seen few times, much of the data redundant
    "fashion60k": Task("fashion60k", "FashionMNIST", 59000, 1000, "cnn", 6, 0.05, 128, 3, WIDE_RULES, (), ()),
    # the frontier's CIFAR-10 (CifarCNN, no augmentation) and SST-2 (MiniLM top 2 layers) tasks: same data and nets
    "cifar10_noaug": Task(
        "cifar10_noaug", "CIFAR-10", 10000, 2000, "frontier", 20, 0.1, 64, 3, FRONTIER_RULES, FRONTIER_50, FRONTIER_OWN
    ),
    "sst2": Task("sst2", "SST-2", 1000, 500, "frontier", 10, 3e-4, 32, 3, SST2_RULES, (), (), "adamw"),
    "quick": Task("quick", "MNIST", 400, 200, "mlp", 6, 0.05, 128, 1, QUICK_RULES, ("ted", "loss", "random"), ("ted",)),
}


def make_model(task: Task) -> nn.Module:
    if task.model == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if task.model == "frontier":
        from frontier_tasks import TASKS as FRONTIER
        from frontier_tasks import build_net

        return build_net(FRONTIER[task.name])
    return SmallCNN(10)


def load(task: Task) -> tuple:
    """``(inputs, labels, val inputs, val labels)``; inputs are a tuple of tensors (the model's arguments)."""
    if task.model == "frontier":  # the frontier task's own split (CIFAR train normalised as its loader does)
        from frontier_tasks import TASKS as FRONTIER
        from frontier_tasks import task_data

        train, val, _ = task_data(FRONTIER[task.name])
        xs = train.tensors[:-1]
        if task.dataset == "CIFAR-10":
            xs = (normalize_images(xs[0], CIFAR10_MEAN, CIFAR10_STD),)
        return xs, train.tensors[-1], val.tensors[:-1], val.tensors[-1]
    full = load_image_classification(task.dataset, train=True, limit=task.n_train + task.n_val)
    x, y = full.tensors
    return (x[: task.n_train],), y[: task.n_train], (x[task.n_train :],), y[task.n_train :]


def rows_of(xs: tuple, idx: torch.Tensor | slice) -> tuple:
    return tuple(t[idx] for t in xs)


def lr_at(task: Task, epoch: int) -> float:
    return task.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / task.total_epochs))


def train_epoch(model, opt, task, xs, y, epoch, seed, weights, tracker=None) -> None:
    """One epoch in the full run's order (a ``(seed, epoch)`` permutation) over the samples of weight > 0."""
    lr = lr_at(task, epoch)
    for group in opt.param_groups:
        group["lr"] = lr
    perm = torch.randperm(y.shape[0], generator=epoch_generator(seed, epoch, stream=7))
    order = perm[weights[perm] > 0]
    model.train()
    for idx in order.split(task.batch_size):
        if tracker is not None:
            tracker.capture.enabled = True
        losses = F.cross_entropy(model(*rows_of(xs, idx)), y[idx], reduction="none")
        w = weights[idx]
        opt.zero_grad(set_to_none=True)
        (losses * w).mean().backward()
        if tracker is not None:
            tracker.capture.enabled = False
            tracker.observe(idx, losses, w, lr)
        opt.step()


@torch.no_grad()
def evaluate(model, xs, y, xvs, yv) -> dict[str, float]:
    model.eval()
    chunks = [slice(i, i + 1024) for i in range(0, y.shape[0], 1024)]
    train_loss = sum(F.cross_entropy(model(*rows_of(xs, c)), y[c], reduction="sum").item() for c in chunks)
    logits = torch.cat([model(*rows_of(xvs, slice(i, i + 1024))) for i in range(0, yv.shape[0], 1024)])
    return {
        "train_loss": train_loss / y.shape[0],
        "val_loss": F.cross_entropy(logits, yv).item(),
        "val_acc": 100.0 * (logits.argmax(1) == yv).float().mean().item(),
    }


def new_optimizer(model: nn.Module, task: Task) -> torch.optim.Optimizer:
    if task.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=task.lr, weight_decay=1e-4)
    return torch.optim.SGD(model.parameters(), lr=task.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)


def continue_run(task, snap, data, seed, phase, weights) -> dict[str, float]:
    """H epochs from the checkpoint ``snap`` with per-sample ``weights`` (0 = removed)."""
    model = make_model(task)
    model.load_state_dict(snap["model"])
    opt = new_optimizer(model, task)
    # a copy: Optimizer.load_state_dict keeps the given state tensors (momentum, Adam moments and step) as its
    # own and updates them in place, so without it every continuation would start from the momentum the
    # previous continuation from this checkpoint left behind
    opt.load_state_dict(copy.deepcopy(snap["opt"]))
    x, y, xv, yv = data
    torch.manual_seed(10_000 * seed + phase)  # dropout (MiniLM): the same stream from every checkpoint
    for e in range(phase, phase + task.horizon):
        train_epoch(model, opt, task, x, y, e, seed, weights)
    return evaluate(model, x, y, xv, yv)


def full_run(task: Task, data, seed: int, rules: list[str]):
    """The full-data run: checkpoints (model, optimizer, rules) at each phase and metrics H epochs later."""
    x, y, xv, yv = data
    torch.manual_seed(seed)
    model = make_model(task)
    opt = new_optimizer(model, task)
    tracker = ScoreTracker(rules, y.shape[0], find_head(model), labels=y)
    ones = torch.ones(y.shape[0])
    snaps, after = {}, {}
    for e in range(task.total_epochs):
        if e in task.phases:
            snaps[e] = {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict())}
            snaps[e]["rules"] = {r.name: copy.deepcopy(r) for r in tracker.rules}
        if e - task.horizon in task.phases:
            after[e - task.horizon] = evaluate(model, x, y, xv, yv)
        tracker.start_epoch(model, x, y, e, seed)
        train_epoch(model, opt, task, x, y, e, seed, ones, tracker)
        tracker.end_epoch(e)
    after[task.total_epochs - task.horizon] = evaluate(model, x, y, xv, yv)
    return snaps, after


def experiments_for(task: Task, phase: int) -> list[tuple[str, float, str]]:
    """(rule, fraction, kind) pairs measured at ``phase``: lowest 30% everywhere; 50% and own at the middle."""
    rules = task.rules or tuple(RULES)
    out = [(r, 0.3, "lowest") for r in rules]
    if phase == task.phases[1]:
        out += [(r, 0.5, "lowest") for r in (rules if task.rules_50 is None else task.rules_50) if r != "ted_top"]
        out += [(r, 0.3, "own") for r in (OWN_RULES if task.rules_own is None else task.rules_own)]
    return out


def run_task(task: Task, seeds: list[int], cache: Path, masks: int) -> None:
    """Every seed's full run first, then the removals phase by phase over the seeds, so an interrupted
    benchmark leaves whole phases with every seed (the report counts a seed where its random set ran)."""
    done = {(r["seed"], r["phase"], r["rule"], r["frac"], r["kind"]) for r in read_cache(cache)}
    data = load(task)
    runs = {}
    for seed in seeds:
        if all((seed, p, r, f, k) in done for p in task.phases for r, f, k in experiments_for(task, p)):
            continue
        t0 = time.time()
        runs[seed] = full_run(task, data, seed, list(task.rules or RULES))
        print(f"[{task.name}] seed {seed}: full run {time.time() - t0:.0f}s", flush=True)
    for phase in task.phases:
        for seed, (snaps, after) in runs.items():
            todo = [e for e in experiments_for(task, phase) if (seed, phase, *e) not in done]
            for rule, frac, kind in todo:
                append(cache, removal(task, data, seed, phase, snaps[phase], after[phase], rule, frac, kind))
    if masks and seeds[0] in runs:
        snaps, after = runs[seeds[0]]
        mask_regression(task, data, seeds[0], snaps[task.phases[1]], after[task.phases[1]], masks, cache)


def removal(task, data, seed, phase, snap, ref, rule, frac, kind) -> dict:
    """One rule's drop set (or own selection) removed for H epochs from the checkpoint ``snap``."""
    r = snap["rules"][rule]
    gen = epoch_generator(seed, 1000 + phase, stream=int(frac * 10))  # the same draw for every rule
    if kind == "own":
        kept, weights = r.own_selection(frac, gen)
        weights = torch.where(kept, weights, 0.0)
    else:
        weights = (~r.drop_mask(frac, gen)).float()
    t1 = time.time()
    m = continue_run(task, snap, data, seed, phase, weights)
    print(
        f"  seed {seed} phase {phase} {rule:14s} {kind:6s} {frac:.1f}: dval_loss "
        f"{m['val_loss'] - ref['val_loss']:+.4f} dtrain {m['train_loss'] - ref['train_loss']:+.4f}",
        flush=True,
    )
    return dict(
        task=task.name, seed=seed, phase=phase, rule=rule, frac=frac, kind=kind,
        dropped=float((weights == 0).float().mean()), mean_weight=float(weights[weights > 0].mean()),
        **m, **{f"full_{k}": v for k, v in ref.items()}, seconds=time.time() - t1,
    )  # fmt: skip


def mask_regression(task, data, seed, snap, ref, n_masks, cache) -> None:
    """Random 30% drop masks: their measured cost beside the sum of each rule's scores over the mask."""
    phase = task.phases[1]
    n = data[1].shape[0]
    for i in range(n_masks):
        drop = torch.rand(n, generator=epoch_generator(seed, 5000 + i, stream=1)) < 0.3
        m = continue_run(task, snap, data, seed, phase, (~drop).float())
        sums = {}
        for name, r in snap["rules"].items():
            s = r.method.importance(r.state) if r.read == "importance" else r.state.score
            s = torch.where(torch.isfinite(s), s, 0.0)
            sums[name] = float(s[drop].double().sum())
        append(
            cache,
            dict(
                task=task.name,
                seed=seed,
                phase=phase,
                kind="mask",
                mask=i,
                cost_val_loss=m["val_loss"] - ref["val_loss"],
                cost_train_loss=m["train_loss"] - ref["train_loss"],
                sums=sums,
            ),
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["mnist_mlp", "fashion"], choices=sorted(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--masks", type=int, default=300, help="random masks on the first (smallest) task")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quick", action="store_true", help="the tiny version (seconds)")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    if a.quick:
        a.tasks, a.seeds, a.masks = ["quick"], [0, 1], 8
    a.out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(a.tasks):
        cache = a.out / f"score_validity_{name}.jsonl"
        if not a.report_only:
            run_task(TASKS[name], a.seeds, cache, a.masks if i == 0 else 0)
        print(report(TASKS[name], read_cache(cache, TASKS[name]), a.out))
    caches = [(t, a.out / f"score_validity_{t.name}.jsonl") for t in TASKS.values()]
    done = [(t, read_cache(c, t)) for t, c in caches if c.exists() and (t.name == "quick") == a.quick]
    text = summary(done)
    (a.out / ("score_validity_quick_summary.md" if a.quick else "score_validity_summary.md")).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
