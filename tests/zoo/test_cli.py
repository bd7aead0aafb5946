"""The ``lightning-ted`` LightningCLI: every shipped config trains, links and validates its values."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import requires_mnist

from lightning_ted import TED, DynamicPruningDataModule, TEDPruningCallback
from lightning_ted.cli import run_cli
from lightning_ted.observe.run_history import epoch_rows, read_csv_metrics

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
QUICK = [
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_checkpointing=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.datamodule.init_args.limit=300",
    "--data.init_args.datamodule.init_args.val_size=200",
]


def _fit(config: Path, tmp_path: Path, *extra: str):
    return run_cli(["fit", f"--config={config}", *QUICK, f"--trainer.logger.init_args.save_dir={tmp_path}", *extra])


@requires_mnist
@pytest.mark.parametrize("name", ["mnist", "noisy_mnist", "fashion", "sst2"])
def test_every_shipped_config_fits_with_linked_epochs(name, tmp_path):
    """Each config trains through the CLI; the LR decay and the schedule take trainer.max_epochs."""
    cli = _fit(CONFIGS / f"{name}.yaml", tmp_path)
    dm = cli.datamodule
    assert isinstance(dm, DynamicPruningDataModule) and isinstance(dm.method, TED)
    assert cli.trainer.current_epoch == 2
    assert cli.model.hparams.max_epochs == 2 and dm.schedule.max_epochs == 2
    rows = epoch_rows(read_csv_metrics(Path(cli.trainer.logger.log_dir)))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert rows[1]["prune/kept_samples"] == len(dm.current_selection) < 300
    if name == "noisy_mnist":
        assert dm.inner.flipped.sum().item() == 60  # 20% of the 300 training samples


def test_print_config_shows_the_pruning_choices(capsys):
    """--print_config resolves the YAML into the full config, method and schedule included."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", f"--config={CONFIGS / 'mnist.yaml'}", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    init = printed["data"]["init_args"]
    assert init["method"]["class_path"] == "lightning_ted.TED" and init["method"]["init_args"]["q"] == 0.5
    assert init["schedule"]["init_args"]["ratio"] == 0.5
    assert init["datamodule"]["class_path"] == "lightning_ted.zoo.data.ImageData"


def test_a_typo_in_a_config_key_is_a_clear_error(tmp_path, capsys):
    """jsonargparse names the unknown key instead of ignoring it."""
    cfg = yaml.safe_load((CONFIGS / "mnist.yaml").read_text())
    cfg["data"]["init_args"]["schedule"]["init_args"]["rato"] = 0.3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", f"--config={bad}"])
    assert exit_info.value.code != 0
    assert "rato" in capsys.readouterr().err


def test_schedule_epochs_that_disagree_with_the_trainer_are_refused(tmp_path):
    """A schedule max_epochs other than trainer.max_epochs fails before training, naming both."""
    with pytest.raises(ValueError, match=r"max_epochs=5 disagrees with trainer.max_epochs=2"):
        _fit(CONFIGS / "mnist.yaml", tmp_path, "--data.init_args.schedule.init_args.max_epochs=5")


@requires_mnist
def test_the_callback_is_added_when_the_config_lists_none(tmp_path):
    """Without a TEDPruningCallback in trainer.callbacks the CLI adds one, so scores still update."""
    cfg = yaml.safe_load((CONFIGS / "mnist.yaml").read_text())
    del cfg["trainer"]["callbacks"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(cfg))
    cli = _fit(plain, tmp_path)
    assert sum(isinstance(cb, TEDPruningCallback) for cb in cli.trainer.callbacks) == 1
    assert int((cli.datamodule.state.seen > 0).sum()) == 300


@requires_mnist
def test_validate_and_test_subcommands_run(tmp_path):
    """``validate`` and ``test`` use the wrapped datamodule's loaders and need no callback."""
    for sub in ("validate", "test"):
        cli = run_cli(
            [
                sub,
                f"--config={CONFIGS / 'mnist.yaml'}",
                "--data.init_args.datamodule.init_args.limit=300",
                "--data.init_args.datamodule.init_args.test_limit=300",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
                "--trainer.enable_progress_bar=false",
            ]
        )
        assert f"{'val' if sub == 'validate' else 'test'}_acc" in cli.trainer.callback_metrics


def console_script() -> str | None:
    """The installed ``lightning-ted`` script: beside this interpreter (a venv not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "lightning-ted"
    return str(beside) if beside.exists() else shutil.which("lightning-ted")


def test_console_script_is_installed():
    """``lightning-ted`` is installed with the package and answers ``--help`` with the subcommands."""
    exe = console_script()
    assert exe is not None, "pip install -e . should have installed the lightning-ted console script"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and all(sub in out.stdout for sub in ("fit", "validate", "test"))


@requires_mnist
def test_console_script_fit_exits_zero(tmp_path):
    """A finished ``lightning-ted fit`` exits with status 0 and prints no stray object."""
    exe = console_script()
    cmd = [exe, "fit", f"--config={CONFIGS / 'mnist.yaml'}", *QUICK, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TEDCLI object" not in out.stdout + out.stderr
