"""The frontier benchmark runs through ``lightning-ted frontier`` over its task configs
(``experiments/configs/frontier/``, one per method written by ``experiments/frontier.py``); each run must be
the plain-Lightning run the benchmark defines (the model, data, schedule and seed of ``direct_run`` below),
bit for bit."""

from __future__ import annotations

import importlib.util
import json

import frontier
import lightning as L
import pytest
from compare import TaskModule, accuracy
from frontier_report import MEASURE
from frontier_tasks import (
    _DATA,
    ANNEAL,
    QUICK,
    WARMUP,
    TaskSpec,
    _cifar_train_module,
    build_net,
    make_pruner,
    schedule_ratio,
    task_data,
)

from lightning_ted import ConstantSchedule, DynamicPruningDataModule
from lightning_ted.frontier.command import main as command
from lightning_ted.zoo.datasets import default_data_root
from lightning_ted.zoo.demo import timed_fit

pytestmark = pytest.mark.filterwarnings("ignore")
NEEDS = {"fashion": "FashionMNIST", "cifar10": "CIFAR-10", "sst2": "SST-2"}


def direct_run(method: str, level: float, seed: int, spec: TaskSpec) -> tuple[float, float, float]:
    """(saved, test %, validation %) of one benchmark run built by hand with plain Lightning, as the benchmark
    defines it: ``method`` "budget" trains b = ``level`` of E on all data, else at the target ``level``."""
    train, val, test = task_data(spec)
    budget = method == "budget"
    epochs = int(round(level * spec.epochs)) if budget else spec.epochs
    ratio = 0.0 if budget else schedule_ratio(method, level, spec)
    L.seed_everything(seed, verbose=False)
    net = build_net(spec)
    model = TaskModule(net, lr=spec.lr, epochs=epochs, adam=spec.data == "sst2")
    schedule = ConstantSchedule(ratio=ratio, warmup_epochs=WARMUP, anneal=ANNEAL)
    kwargs = dict(method=make_pruner("full" if budget else method, epochs), schedule=schedule, seed=seed)
    if spec.data.startswith("cifar10"):
        dm = DynamicPruningDataModule(datamodule=_cifar_train_module(train, spec, seed), **kwargs)
    else:
        dm = DynamicPruningDataModule(train, batch_size=spec.batch_size, **kwargs)
    timed_fit(model, dm, epochs, limit_val_batches=0)
    saved = 1.0 - epochs / spec.epochs if budget else dm.run.saved_fraction(epochs - 1)
    return saved, accuracy(net, test), accuracy(net, val)


@pytest.mark.parametrize("task", ["fashion", "cifar10", pytest.param("sst2", marks=pytest.mark.slow)])
def test_the_benchmark_runs_through_the_command_on_its_task_config_are_the_plain_lightning_runs(task, tmp_path):
    """``experiments/frontier.py``'s config for TED, run by ``lightning-ted frontier`` at the test sizes: its
    budget point b = 0.5 and TED at the 50% target, seed 1 (CIFAR's augmentation follows the run's seed)."""
    if not (default_data_root() / NEEDS[task]).exists():
        pytest.skip(f"shared/data/{NEEDS[task]} is not present")
    if task == "sst2" and importlib.util.find_spec("transformers") is None:
        pytest.skip("the nlp extra is not installed")
    spec = QUICK[task]
    _DATA.pop(task, None)  # the data cache is keyed by task name: the test sizes from here on
    config = frontier.write_method_config(spec, "ted", tmp_path / "configs")
    ratio = repr(schedule_ratio("ted", 0.5, spec))
    argv = ["--config", str(config), "--budgets", "0.5", "--ratios", ratio, "--seeds", "2", "--threads", "1",
            "--measure", MEASURE, "--out", str(tmp_path / "out")]  # fmt: skip
    assert command(argv) == 0
    runs = [json.loads(line) for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    by = {(r["method"], r["epochs"], r["seed"]): r for r in runs}
    for method, run in (("budget", by["full", 3, 1]), ("ted", by["ted", 6, 1])):
        saved, test_acc, val_acc = direct_run(method, 0.5, 1, spec)
        assert (run["saved"], run["extra"]["test_acc"], run["extra"]["val_acc"]) == (
            pytest.approx(saved),
            test_acc,
            val_acc,
        )
