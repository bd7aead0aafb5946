"""``lightning-ted frontier`` end to end on a tiny config through real fits: outputs, resume, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import requires_mnist

from lightning_ted.frontier.command import main

pytestmark = [requires_mnist, pytest.mark.filterwarnings("ignore")]


def tiny_config(tmp_path: Path, **changes) -> Path:
    """MNIST 200 + 100 validation, SmallCNN, E = 2, TED at a constant 0.5 after one warm-up epoch."""
    cfg = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 2, "accelerator": "cpu", "devices": 1,
            "callbacks": [{"class_path": "lightning_ted.TEDPruningCallback"}],
        },
        "model": {
            "class_path": "lightning_ted.zoo.models.Classifier",
            "init_args": {"net": {"class_path": "lightning_ted.zoo.models.SmallCNN"}, "num_classes": 10, "lr": 0.05},
        },
        "data": {
            "class_path": "lightning_ted.DynamicPruningDataModule",
            "init_args": {
                "datamodule": {
                    "class_path": "lightning_ted.zoo.data.ImageData",
                    "init_args": {"name": "MNIST", "limit": 200, "val_size": 100, "batch_size": 50},
                },
                "method": {"class_path": "lightning_ted.TED"},
                "schedule": {"class_path": "lightning_ted.ConstantSchedule",
                             "init_args": {"ratio": 0.5, "warmup_epochs": 1, "anneal": 0}},
            },
        },
    }  # fmt: skip
    for key, value in changes.items():  # "a.b.c" -> value
        *path, leaf = key.split(".")
        node = cfg
        for part in path:
            node = node[part]
        node[leaf] = value
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_frontier_writes_table_plot_runs_and_overhead_then_resumes_without_rerunning(tmp_path, capsys):
    """Budgets 1.0 and 0.5 (1 epoch) and TED on 2 seeds; then a lost run is the only one trained again."""
    config = tiny_config(tmp_path, **{"trainer.logger": {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"project": "frontier-test", "offline": True, "save_dir": str(tmp_path)},
    }})  # fmt: skip
    out = tmp_path / "out"
    args = ["--config", str(config), "--budgets", "0.5", "--seeds", "2", "--out", str(out)]
    assert main(args) == 0
    runs = (out / "runs.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in runs]
    assert sorted((r["method"], r["epochs"], r["seed"]) for r in records) == [
        ("full", 1, 0), ("full", 1, 1), ("full", 2, 0), ("full", 2, 1), ("ted", 2, 0), ("ted", 2, 1)
    ]  # fmt: skip
    ted = [r for r in records if r["method"] == "ted"]
    assert all(r["saved"] == pytest.approx(0.25) for r in ted)  # one of two epochs at half the samples
    assert all(0.0 <= r["metric"] <= 1.0 and r["fit_seconds"] > 0 for r in records)
    text = (out / "frontier.md").read_text()
    assert (
        "**Verdict:**" in text and "| ted r=0.5 | 2 | 2 | 25.0% |" in text and "| full b=0.5 | 1 | 2 | 50.0% |" in text
    )
    overhead = json.loads((out / "overhead.json").read_text())
    assert overhead["runs"] == 6 and 0 < overhead["share"] < 1 and "Command overhead" in text
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert list((tmp_path / "wandb").glob("offline-run-*")), "the WandbLogger config logs the report to W&B"

    capsys.readouterr()
    assert main([*args, "--report-only"]) == 0  # redraws from runs.jsonl: the same table
    assert (out / "frontier.md").read_text() == text

    (out / "runs.jsonl").write_text("\n".join(runs[:-1]) + "\n")  # the last run was lost (interrupted)
    capsys.readouterr()
    assert main(args) == 0
    assert "5 of 6 runs cached, 1 to train" in capsys.readouterr().out
    again = (out / "runs.jsonl").read_text().splitlines()
    assert again[:5] == runs[:5] and len(again) == 6  # finished runs kept as they were, not rerun
    assert json.loads(again[5])["method"] == json.loads(runs[5])["method"]


def _refused(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    return err


def test_a_config_without_a_pruning_datamodule_is_refused(tmp_path, capsys):
    plain = {"class_path": "lightning_ted.zoo.data.ImageData", "init_args": {"name": "MNIST", "limit": 200}}
    err = _refused(capsys, "--config", str(tiny_config(tmp_path, data=plain)), "--out", str(tmp_path / "o"))
    assert "('lightning_ted.zoo.data.ImageData') is not a DynamicPruningDataModule" in err and "Wrap your" in err
    assert not (tmp_path / "o" / "runs.jsonl").exists()


def test_an_lr_schedule_sized_to_a_fixed_length_is_refused(tmp_path, capsys, monkeypatch):
    """A cosine decay over a hard-coded 2 epochs would leave the 1-epoch budget run at a high LR."""
    (tmp_path / "fixed_horizon_model.py").write_text(
        "import torch\nfrom lightning_ted.zoo.models import Classifier\n\n\n"
        "class FixedCosine(Classifier):\n"
        "    def configure_optimizers(self):\n"
        "        opt = torch.optim.SGD(self.parameters(), lr=0.05)\n"
        "        return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tiny_config(tmp_path, **{"model.class_path": "fixed_horizon_model.FixedCosine"})
    err = _refused(capsys, "--config", str(config), "--budgets", "0.5", "--out", str(tmp_path / "o"))
    assert "does not follow the Trainer's run length: this run is 1 epochs long" in err
    assert "self.trainer.max_epochs" in err


def test_a_metric_the_model_does_not_log_is_refused(tmp_path, capsys):
    err = _refused(capsys, "--config", str(tiny_config(tmp_path)), "--metric", "val_f1", "--out", str(tmp_path / "o"))
    assert "'val_f1' is not logged" in err and "val_acc" in err and "--metric" in err


def test_an_early_stopping_callback_in_the_config_is_refused(tmp_path, capsys):
    callbacks = [{"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val_acc"}}]
    config = tiny_config(tmp_path, **{"trainer.callbacks": callbacks})
    err = _refused(capsys, "--config", str(config), "--out", str(tmp_path / "o"))
    assert "EarlyStopping" in err and "stop runs before their budget" in err


def test_a_run_length_in_steps_is_refused(tmp_path, capsys):
    err = _refused(capsys, "--config", str(tiny_config(tmp_path, **{"trainer.max_steps": 20})), "--out", str(tmp_path))
    assert "{'max_steps': 20}" in err and "compares runs by epochs" in err


def test_one_seed_when_standard_errors_are_asked_is_refused(tmp_path, capsys):
    err = _refused(capsys, "--config", str(tiny_config(tmp_path)), "--seeds", "1", "--out", str(tmp_path / "o"))
    assert "--seeds 1 gives no standard error" in err and "--no-se" in err


def test_ratios_and_targets_given_together_are_refused(tmp_path, capsys):
    args = ["--config", str(tiny_config(tmp_path)), "--ratios", "0.5", "--targets", "0.3", "--out", str(tmp_path)]
    assert "--ratios and --targets both given" in _refused(capsys, *args)


def test_an_unknown_method_name_is_refused_before_training(tmp_path, capsys):
    err = _refused(capsys, "--config", str(tiny_config(tmp_path)), "--methods", "infobach", "--out", str(tmp_path))
    assert "unknown method 'infobach'" in err and "infobatch" in err


@pytest.mark.slow
def test_the_console_script_runs_the_frontier_subcommand(tmp_path):
    """``lightning-ted frontier`` goes through the installed script; a refusal exits 2 with the message."""
    exe = Path(sys.executable).parent / "lightning-ted"
    cmd = [str(exe), "frontier", "--config", str(tiny_config(tmp_path)), "--seeds", "1", "--out", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"})
    assert out.returncode == 2 and out.stderr.startswith("error: --seeds 1 gives no standard error")
