"""The frontier benchmark runs on the ``lightning-ted frontier`` runner over its task configs
(``experiments/configs/frontier/``); each run must be the plain-Lightning run the benchmark defines (the
model, data, schedule and seed of ``direct_run`` below, the pre-migration ``run_job``), bit for bit."""

from __future__ import annotations

import importlib.util

import frontier
import lightning as L
import pytest
from compare import TaskModule, accuracy

from lightning_ted import ConstantSchedule, DynamicPruningDataModule
from lightning_ted.zoo.datasets import default_data_root
from lightning_ted.zoo.demo import timed_fit

pytestmark = pytest.mark.filterwarnings("ignore")
NEEDS = {"fashion": "FashionMNIST", "cifar10": "CIFAR-10", "sst2": "SST-2"}


def direct_run(job: frontier.Job, spec: frontier.TaskSpec) -> tuple[float, float, float]:
    """(saved, test %, validation %) of ``job`` built by hand with plain Lightning, as the benchmark defines it."""
    train, val, test = frontier.task_data(spec)
    budget = job.method == "budget"
    epochs = int(round(job.level * spec.epochs)) if budget else spec.epochs
    ratio = 0.0 if budget else frontier.schedule_ratio(job.method, job.level, spec)
    L.seed_everything(job.seed, verbose=False)
    net = frontier.build_net(spec)
    model = TaskModule(net, lr=spec.lr, epochs=epochs, adam=spec.data == "sst2")
    schedule = ConstantSchedule(ratio=ratio, warmup_epochs=frontier.WARMUP, anneal=frontier.ANNEAL)
    kwargs = dict(
        method=frontier.make_pruner("full" if budget else job.method, epochs), schedule=schedule, seed=job.seed
    )
    if spec.data.startswith("cifar10"):
        dm = DynamicPruningDataModule(datamodule=frontier._cifar_train_module(train, spec, job.seed), **kwargs)
    else:
        dm = DynamicPruningDataModule(train, batch_size=spec.batch_size, **kwargs)
    timed_fit(model, dm, epochs, limit_val_batches=0)
    saved = 1.0 - epochs / spec.epochs if budget else dm.saved_fraction(epochs - 1)
    return saved, accuracy(net, test), accuracy(net, val)


@pytest.mark.parametrize("task", ["fashion", "cifar10", pytest.param("sst2", marks=pytest.mark.slow)])
@pytest.mark.parametrize(("method", "level"), [("budget", 0.5), ("ted", 0.5)])
def test_the_benchmark_run_through_its_task_config_is_the_plain_lightning_run(task, method, level):
    if not (default_data_root() / NEEDS[task]).exists():
        pytest.skip(f"shared/data/{NEEDS[task]} is not present")
    if task == "sst2" and importlib.util.find_spec("transformers") is None:
        pytest.skip("the nlp extra is not installed")
    spec = frontier.QUICK[task]
    frontier._DATA.pop(task, None)  # the data cache is keyed by task name: the test sizes from here on
    job = frontier.Job(task, method, level, 0)
    result = frontier.run_job(job, spec)
    saved, test_acc, val_acc = direct_run(job, spec)
    assert (result.saved, result.test_acc, result.val_acc) == (pytest.approx(saved), test_acc, val_acc)
    assert result.epochs == (3 if method == "budget" else 6) and result.fingerprint == spec.fingerprint()
