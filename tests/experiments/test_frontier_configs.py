"""The frontier tasks as LightningCLI configs: through the ``lightning-ted frontier`` runner they train exactly
what ``experiments/frontier.py``'s ``run_job`` trains (the premise of moving the benchmark onto the command)."""

from __future__ import annotations

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

pytestmark = [
    pytest.mark.filterwarnings("ignore"),
    pytest.mark.skipif(not (default_data_root() / "FashionMNIST").exists(), reason="shared/data/FashionMNIST absent"),
]


def measured_accuracy(trainer, model, dm) -> dict:
    """The benchmark's measures of a trained run, in percent, as ``run_job`` takes them."""
    _, val, test = frontier.task_data(frontier.QUICK["fashion"])
    return {"test_acc": accuracy(model.net, test), "val_acc": accuracy(model.net, val)}


@pytest.mark.parametrize(("method", "level"), [("budget", 0.5), ("ted", 0.5)])
def test_the_fashion_config_through_the_command_runner_trains_what_run_job_trains(method, level, tmp_path):
    spec = frontier.QUICK["fashion"]
    frontier._DATA.pop("fashion", None)  # the data cache is keyed by task name: the test sizes from here on
    expected = frontier.run_job(frontier.Job("fashion", method, level, 0), spec)
    cfg = yaml.safe_load((EXPERIMENTS / "configs" / "frontier" / "fashion.yaml").read_text())
    cfg["trainer"]["max_epochs"] = spec.epochs
    cfg["data"]["init_args"]["datamodule"]["init_args"]["quick"] = True
    (tmp_path / "fashion.yaml").write_text(yaml.safe_dump(cfg))
    task = load_config(tmp_path / "fashion.yaml")
    if method == "budget":
        run = Run("full", level, 0, round(level * spec.epochs))
    else:
        run = Run(method, frontier.schedule_ratio(method, level, spec), 0, spec.epochs)
    record = fit_one(run_config(task, run, tmp_path), run, task.metric, spec.epochs, measured_accuracy)
    assert record["saved"] == pytest.approx(expected.saved)
    assert record["extra"] == {"test_acc": expected.test_acc, "val_acc": expected.val_acc}
    assert record["metric"] == pytest.approx(expected.val_acc / 100)  # the Lightning val_acc, a fraction
