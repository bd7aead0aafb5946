"""``lightning-ted frontier`` end to end on a tiny config through real fits: outputs, resume, refusals."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
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
    level, threads, filters = logging.getLogger("lightning.pytorch").level, torch.get_num_threads(), warnings.filters[:]
    called = time.perf_counter()
    assert main(args) == 0
    elapsed = time.perf_counter() - called
    # run in-process (a notebook), the command leaves the caller's logging, warnings and threads as they were
    assert logging.getLogger("lightning.pytorch").level == level and torch.get_num_threads() == threads
    assert warnings.filters == filters
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
    assert overhead["grid_s"] <= elapsed  # called in a running process, the clock starts with the call, not the process
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


# ------------------------------------------------------------------ issue 29: what users did that went wrong


def _module(tmp_path: Path, name: str, text: str) -> None:
    """A user's module next to their config (each test its own name: modules stay imported)."""
    (tmp_path / f"{name}.py").write_text(text)


def test_checkpoint_monitor_on_accuracy_without_mode_is_refused(tmp_path, capsys):
    """ModelCheckpoint's default mode is min: inheriting it for val_acc would call a lower accuracy a gain."""
    callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"monitor": "val_acc"}}]
    config = str(tiny_config(tmp_path, **{"trainer.callbacks": callbacks}))
    err = _refused(capsys, "--config", config, "--out", str(tmp_path / "o"))
    assert "ModelCheckpoint(monitor='val_acc')" in err and "mode: max" in err and "--mode max" in err
    assert not (tmp_path / "o" / "runs.jsonl").exists()
    err = _refused(capsys, "--config", config, "--mode", "max", "--report-only", "--out", str(tmp_path / "o"))
    assert "no finished runs" in err  # the direction given: past the config check


def test_checkpoint_mode_min_on_accuracy_is_refused_unless_confirmed(tmp_path, capsys):
    callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"monitor": "val_acc", "mode": "min"}}]  # fmt: skip
    config = str(tiny_config(tmp_path, **{"trainer.callbacks": callbacks}))
    err = _refused(capsys, "--config", config, "--out", str(tmp_path / "o"))
    assert "mode='min'" in err and "lower val_acc" in err and "--mode" in err


def test_a_metric_logged_only_on_step_is_refused_with_on_epoch(tmp_path, capsys, monkeypatch):
    """A per-batch validation value is not the epoch's metric: the message says to log it with on_epoch=True."""
    _module(tmp_path, "step_only_model", (
        "from lightning_ted.zoo.models import Classifier\n\n\n"
        "class StepOnly(Classifier):\n"
        "    def validation_step(self, batch, batch_idx):\n"
        "        acc = (self(batch[0]).argmax(-1) == batch[1]).float().mean()\n"
        "        self.log('val_acc', acc, on_step=True, on_epoch=False)\n"
    ))  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tiny_config(tmp_path, **{"model.class_path": "step_only_model.StepOnly"})
    err = _refused(capsys, "--config", str(config), "--budgets", "0.5", "--out", str(tmp_path / "o"))
    assert "'val_acc' is logged only on_step in validation_step" in err and "on_epoch=True" in err


def test_ratio_one_is_refused_before_any_run(tmp_path, capsys):
    """A schedule ratio is the share of samples skipped per epoch: 1.0 would train on nothing."""
    err = _refused(capsys, "--config", str(tiny_config(tmp_path)), "--ratios", "0.5", "1.0", "--out", str(tmp_path))
    assert "--ratios 1.0" in err and "skip every sample" in err and "--targets" in err
    assert not (tmp_path / "runs.jsonl").exists()


def test_a_later_budget_rounding_to_the_cached_cheapest_epochs_reuses_it_and_reports(tmp_path, capsys):
    """E = 2: --budgets 0.5 and later 0.7 are both 1 epoch. The second command trains nothing, and a cache
    holding both (as earlier versions wrote it) still reports: random pruning's 80% saving lies beyond them."""
    schedule = {"ratio": 0.8, "warmup_epochs": 0, "anneal": 0}
    method = {"class_path": "lightning_ted.methods.random_subset.RandomSubset"}
    config = str(tiny_config(tmp_path, **{"data.init_args.schedule.init_args": schedule,
                                          "data.init_args.method": method}))  # fmt: skip
    out = tmp_path / "o"
    assert main(["--config", config, "--budgets", "0.5", "--seeds", "1", "--no-se", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["--config", config, "--budgets", "0.7", "--seeds", "1", "--no-se", "--out", str(out)]) == 0
    assert "3 of 3 runs cached, 0 to train" in capsys.readouterr().out
    runs = (out / "runs.jsonl").read_text().splitlines()
    cheapest = next(json.loads(line) for line in runs if json.loads(line)["epochs"] == 1)
    with (out / "runs.jsonl").open("a") as fh:  # the duplicate an earlier version trained and cached
        fh.write(json.dumps({**cheapest, "level": 0.7, "metric": cheapest["metric"] + 0.01}) + "\n")
    assert main(["--config", config, "--budgets", "0.7", "--seeds", "1", "--no-se", "--out", str(out),
                 "--report-only"]) == 0  # fmt: skip
    text = (out / "frontier.md").read_text()
    assert text.count("| full b=") == 2 and "| random r=0.8 | 2 | 1 | 80.0% |" in text


def test_sigterm_during_the_runs_exits_143_with_a_partial_report(tmp_path, capsys):
    """A scheduler's SIGTERM after the first run: exit status 143, and frontier.md of what finished, marked."""
    out = tmp_path / "o"

    def terminate_after_first_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (out / "runs.jsonl").exists() and (out / "runs.jsonl").read_text().strip():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)

    threading.Thread(target=terminate_after_first_run, daemon=True).start()
    status = main(["--config", str(tiny_config(tmp_path)), "--seeds", "2", "--out", str(out)])
    assert status == 143
    runs = (out / "runs.jsonl").read_text().splitlines()
    assert 1 <= len(runs) < 6
    text = (out / "frontier.md").read_text()
    assert f"**Partial:** stopped by SIGTERM after {len(runs)} of 6 runs" in text and "rerun the same command" in text
    assert "stopped by SIGTERM" in capsys.readouterr().err


def test_a_plain_lightningcli_config_without_class_path_runs_with_model_class(tmp_path, capsys):
    """``model:`` holding init args, as for ``LightningCLI(Classifier, ...)``: the class is named once."""
    init = {"net": {"class_path": "lightning_ted.zoo.models.SmallCNN"}, "num_classes": 10, "lr": 0.05}
    config = str(tiny_config(tmp_path, model=init))
    err = _refused(capsys, "--config", config, "--seeds", "1", "--no-se", "--out", str(tmp_path / "o"))
    assert "model: has init args (lr, net, num_classes) but no class_path" in err and "--model-class" in err
    assert "spelling" not in err and not (tmp_path / "o" / "runs.jsonl").exists()
    args = ["--config", config, "--model-class", "lightning_ted.zoo.models.Classifier", "--seeds", "1", "--no-se"]
    assert main([*args, "--budgets", "1.0", "--out", str(tmp_path / "o")]) == 0
    assert len((tmp_path / "o" / "runs.jsonl").read_text().splitlines()) == 2  # full and TED at E


def test_a_model_module_next_to_the_config_imports_without_pythonpath(tmp_path, monkeypatch):
    """``my_model.py`` beside ``my.yaml``, the command run from elsewhere, no PYTHONPATH."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path.parent)
    _module(tmp_path, "beside_config_model", "from lightning_ted.zoo.models import Classifier as Mine  # noqa\n")
    config = tiny_config(tmp_path, **{"model.class_path": "beside_config_model.Mine"})
    args = ["--config", str(config), "--seeds", "1", "--no-se", "--budgets", "1.0"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    assert len((tmp_path / "o" / "runs.jsonl").read_text().splitlines()) == 2


def test_a_model_module_that_is_not_found_is_named_with_where_it_was_looked_for(tmp_path, capsys):
    config = tiny_config(tmp_path, **{"model.class_path": "no_such_user_module.Net"})
    err = _refused(capsys, "--config", str(config), "--out", str(tmp_path / "o"))
    assert "model.class_path 'no_such_user_module.Net'" in err and "no module named 'no_such_user_module'" in err
    assert str(tmp_path) in err and "PYTHONPATH" in err


def test_a_model_module_whose_own_import_fails_is_named_with_its_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    _module(tmp_path, "needs_missing_dep", "import a_dependency_not_installed  # noqa\n")
    config = tiny_config(tmp_path, **{"model.class_path": "needs_missing_dep.Net"})
    err = _refused(capsys, "--config", str(config), "--out", str(tmp_path / "o"))
    assert "importing 'needs_missing_dep' (model.class_path) failed" in err
    assert "No module named 'a_dependency_not_installed'" in err


def test_a_learning_rate_monitor_in_the_callbacks_is_left_out_of_the_runs_with_a_note(tmp_path, capsys):
    """Each run trains without a logger; LearningRateMonitor would refuse to start, and it only logs."""
    trainer = {
        "trainer.callbacks": [{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}],
        "trainer.logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                           "init_args": {"save_dir": str(tmp_path)}},
    }  # fmt: skip
    config = tiny_config(tmp_path, **trainer)
    args = ["--config", str(config), "--seeds", "1", "--no-se", "--budgets", "1.0"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    assert "LearningRateMonitor is left out of each run" in capsys.readouterr().out
    assert len((tmp_path / "o" / "runs.jsonl").read_text().splitlines()) == 2


def test_threads_option_sets_each_runs_torch_threads_and_records_them(tmp_path, capsys):
    args = ["--config", str(tiny_config(tmp_path)), "--seeds", "1", "--no-se", "--budgets", "1.0", "--threads", "2"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    records = [json.loads(line) for line in (tmp_path / "o" / "runs.jsonl").read_text().splitlines()]
    assert [r["threads"] for r in records] == [2, 2]
    assert "Threads per run: 2" in (tmp_path / "o" / "frontier.md").read_text()


def test_cached_runs_made_under_another_library_release_are_not_reused(monkeypatch):
    from lightning_ted.frontier import config

    task = config.TaskConfig("c.yaml", {"model": {"class_path": "m.M"}}, 4, "ted", 0.5, "val_acc", "max")
    today = task.fingerprint()
    assert task.fingerprint() == today  # deterministic: the cache of this config and release is reused
    monkeypatch.setattr(config, "library_versions", lambda: {"lightning-ted": "0.2.0", "torch": "9.9"})
    assert task.fingerprint() != today  # after an upgrade the runs are trained again, not quoted as today's


BUDGET = {"class_path": "lightning_ted.research.GeneralizationBudgetSchedule",
          "init_args": {"saved": 0.25, "warmup_epochs": 1, "anneal": 0}}  # fmt: skip


def test_a_second_config_that_changes_only_the_schedule_reuses_the_plain_training_runs(tmp_path, capsys):
    """Issue 30: the budget schedule beside the constant one in one folder; --targets sets its ``saved``."""
    out = tmp_path / "out"
    common = ["--budgets", "0.5", "--seeds", "2", "--out", str(out)]
    assert main(["--config", str(tiny_config(tmp_path)), *common]) == 0
    other = tmp_path / "budget"
    other.mkdir()
    config = tiny_config(other, **{"data.init_args.schedule": BUDGET})
    capsys.readouterr()
    assert main(["--config", str(config), "--targets", "0.25", *common]) == 0
    printed = capsys.readouterr().out
    assert "4 of 6 runs cached, 2 to train" in printed, printed
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    budget = [r for r in records if r["method"] == "ted" and r["level"] == 0.25]
    assert len(budget) == 2 and all(r["saved"] == pytest.approx(0.25) for r in budget)
    assert len({r["config"] for r in records if r["method"] == "full"}) == 1


def test_targets_for_a_schedule_that_fixes_no_saving_are_refused(tmp_path, capsys):
    tolerance = {"class_path": "lightning_ted.research.GeneralizationToleranceSchedule", "init_args": {}}
    config = tiny_config(tmp_path, **{"data.init_args.schedule": tolerance})
    message = _refused(capsys, "--config", str(config), "--targets", "0.3", "--out", str(tmp_path / "o"))
    assert "fixes no saving in advance" in message and "--ratios" in message


def test_a_budget_target_its_pruning_epochs_cannot_save_is_refused(tmp_path, capsys):
    config = tiny_config(tmp_path, **{"data.init_args.schedule": BUDGET})
    message = _refused(capsys, "--config", str(config), "--targets", "0.45", "--out", str(tmp_path / "o"))
    assert "--targets 0.45" in message and "at most" in message


# ------------------------------------------------------- issue 31: the benchmark's tables through the command


def test_measure_records_a_test_accuracy_per_run_and_tables_it(tmp_path, capsys, monkeypatch):
    """``--measure`` calls the user's function after each run: its numbers land in runs.jsonl and frontier.md,
    each run records its method's config entry, and cached runs made without the measure are trained again."""
    _module(tmp_path, "my_measures_ok", (
        "def test_acc(trainer, model, datamodule):\n"
        "    metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]\n"
        "    import torch\n"
        "    return {'test_acc': metrics['test_acc'], 'epochs_run': torch.tensor(trainer.current_epoch)}\n"
    ))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    args = ["--config", str(tiny_config(tmp_path)), "--budgets", "0.5", "--seeds", "2", "--workers", "1"]
    assert main([*args, "--out", str(out)]) == 0  # first without the measure
    capsys.readouterr()
    assert main([*args, "--out", str(out), "--measure", "my_measures_ok.test_acc"]) == 0
    assert "6 cached runs were made without --measure my_measures_ok.test_acc; trained again" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()][6:]
    assert len(records) == 6 and all(r["measure"] == "my_measures_ok.test_acc" for r in records)
    assert all(0.0 <= r["extra"]["test_acc"] <= 1.0 for r in records)
    assert {r["method"]: r["method_config"]["class_path"] for r in records} == {
        "full": "lightning_ted.methods.full.FullData", "ted": "lightning_ted.TED"
    }  # fmt: skip
    text = (out / "frontier.md").read_text()
    ted = [r["extra"]["test_acc"] for r in records if r["method"] == "ted"]
    assert "| run | epochs_run | test_acc |" in text
    assert f"| ted r=0.5 | 2 ± 0 | {sum(ted) / 2:.4g} ± " in text


def test_a_measure_that_does_not_import_or_returns_no_dict_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = str(tiny_config(tmp_path))
    err = _refused(capsys, "--config", config, "--measure", "no_such_module_here.fn", "--out", str(tmp_path / "o"))
    assert "--measure 'no_such_module_here.fn': importing 'no_such_module_here' failed" in err
    assert not (tmp_path / "o" / "runs.jsonl").exists()
    _module(tmp_path, "my_measures_bad", "def acc(trainer, model, datamodule):\n    return 0.9\n")
    err = _refused(capsys, "--config", config, "--measure", "my_measures_bad.acc", "--seeds", "2", "--budgets", "0.5",
                   "--out", str(tmp_path / "o"))  # fmt: skip
    assert "--measure my_measures_bad.acc returned a float: return a dict of measures" in err
    _module(tmp_path, "my_measures_worse", (
        "def named(trainer, model, datamodule):\n    return {'split': 'test'}\n"
        "def broken(trainer, model, datamodule):\n    raise KeyError('test_acc')\n"
    ))  # fmt: skip
    err = _refused(capsys, "--config", config, "--measure", "my_measures_worse.named", "--seeds", "2", "--budgets",
                   "0.5", "--out", str(tmp_path / "o2"))  # fmt: skip
    assert "--measure my_measures_worse.named returned 'split': str; each measure must be a number" in err
    err = _refused(capsys, "--config", config, "--measure", "my_measures_worse.broken", "--seeds", "2", "--budgets",
                   "0.5", "--out", str(tmp_path / "o3"))  # fmt: skip
    assert "--measure my_measures_worse.broken raised KeyError: 'test_acc'" in err
