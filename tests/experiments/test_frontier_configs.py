"""The frontier tasks as LightningCLI configs: through the ``lightning-ted frontier`` runner they train exactly
what ``experiments/frontier.py``'s ``run_job`` trains (the premise of moving the benchmark onto the command)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from lightning_ted.frontier.config import load_config, run_config
from lightning_ted.frontier.plan import Run
from lightning_ted.frontier.runner import fit_one
from lightning_ted.zoo.datasets import default_data_root

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import frontier  # noqa: E402
from compare import accuracy  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
NEEDS = {"fashion": "FashionMNIST", "cifar10": "CIFAR-10", "sst2": "SST-2"}


def measured_accuracy(trainer, model, dm) -> dict:
    """The benchmark's measures of a trained run, in percent, as ``run_job`` takes them."""
    _, val, test = frontier.task_data(dm.inner.spec)
    return {"test_acc": accuracy(model.net, test), "val_acc": accuracy(model.net, val)}


def quick_config(task: str, tmp_path: Path) -> Path:
    """The task's config at the test sizes (``frontier.QUICK``): its epochs, learning rate and widths."""
    spec = frontier.QUICK[task]
    cfg = yaml.safe_load((EXPERIMENTS / "configs" / "frontier" / f"{task}.yaml").read_text())
    cfg["trainer"]["max_epochs"] = spec.epochs
    cfg["model"]["init_args"]["lr"] = spec.lr
    if spec.width:
        cfg["model"]["init_args"]["net"]["init_args"]["widths"] = list(spec.width)
    cfg["data"]["init_args"]["datamodule"]["init_args"]["quick"] = True
    path = tmp_path / f"{task}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("task", ["fashion", "cifar10", "sst2"])
@pytest.mark.parametrize(("method", "level"), [("budget", 0.5), ("ted", 0.5)])
def test_a_task_config_through_the_command_runner_trains_what_run_job_trains(task, method, level, tmp_path):
    if not (default_data_root() / NEEDS[task]).exists():
        pytest.skip(f"shared/data/{NEEDS[task]} is not present")
    if task == "sst2" and importlib.util.find_spec("transformers") is None:
        pytest.skip("the nlp extra is not installed")
    spec = frontier.QUICK[task]
    frontier._DATA.pop(task, None)  # the data cache is keyed by task name: the test sizes from here on
    expected = frontier.run_job(frontier.Job(task, method, level, 0), spec)
    config = load_config(quick_config(task, tmp_path))
    if method == "budget":
        run = Run("full", level, 0, round(level * spec.epochs))
    else:
        run = Run(method, frontier.schedule_ratio(method, level, spec), 0, spec.epochs)
    record = fit_one(run_config(config, run, tmp_path), run, config.metric, spec.epochs, measured_accuracy)
    assert record["saved"] == pytest.approx(expected.saved)
    assert record["extra"] == {"test_acc": expected.test_acc, "val_acc": expected.val_acc}
