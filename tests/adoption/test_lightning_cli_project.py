"""Issue 22, items 2 and 7: a plain LightningCLI project nests its ``save_hyperparameters()`` DataModule in
``DynamicPruningDataModule``; the wrapped module sees exactly its own arguments, with and without the CLI; a
misspelt key is named on the first line of the error."""

from __future__ import annotations

import pytest
import yaml
from lightning.pytorch.cli import LightningCLI
from user_projects import LinearClassifier, SavedTensorsData, write_tensors

from lightning_ted import DynamicPruningDataModule, RollerCoasterSchedule
from lightning_ted.cli import TEDArgumentParser

TRAINER = {
    "max_epochs": 3,
    "accelerator": "cpu",
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def nested_config(data_dir, **inner_args) -> dict:
    """The README's LightningCLI nesting: the user's DataModule under the pruning DataModule's init_args."""
    return {
        "trainer": TRAINER,
        "data": {
            "class_path": "lightning_ted.DynamicPruningDataModule",
            "init_args": {
                "datamodule": {
                    "class_path": "user_projects.SavedTensorsData",
                    "init_args": {"data_dir": str(data_dir), **inner_args},
                },
                "method": {"class_path": "lightning_ted.TED"},
                "schedule": {"class_path": "lightning_ted.RollerCoasterSchedule", "init_args": {"ratio": 0.5}},
            },
        },
    }


def write_config(path, config) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_user_nests_a_save_hyperparameters_datamodule_under_lightning_cli(tmp_path):
    """Its hparams are its own config entry (not the wrapper's datamodule/method/batch_size=None), so
    ``self.hparams.data_dir`` reads and ``batch_size`` is the user's 48, and the pruned run trains."""
    write_tensors(tmp_path)
    cfg = write_config(tmp_path / "config.yaml", nested_config(tmp_path, batch_size=48))
    cli = LightningCLI(LinearClassifier, subclass_mode_data=True, args=["fit", f"--config={cfg}"],
                       save_config_callback=None)  # fmt: skip
    inner = cli.datamodule.inner
    own = {k: v for k, v in inner.hparams.items() if not k.startswith("_")}
    assert own == {"data_dir": str(tmp_path), "batch_size": 48, "shuffle": True}
    assert inner.hparams["_class_path"] == "user_projects.SavedTensorsData"
    assert cli.datamodule.batch_size == 48, "the wrapped loader's batch size is adopted"
    kept = cli.datamodule.kept_history.tolist()
    assert kept[0] == 192 and kept[2] < 192
    assert cli.trainer.global_step == sum(-(-k // 48) for k in kept)


def test_user_nests_a_pytorch_lightning_datamodule_under_its_own_lightning_cli(tmp_path):
    """The same with ``pytorch_lightning``'s LightningCLI, model and DataModule (its own hparams context)."""
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.cli import LightningCLI as PLCLI
    from user_projects import linear_classifier_class

    write_tensors(tmp_path)
    config = nested_config(tmp_path, batch_size=48)
    config["data"]["init_args"]["datamodule"]["class_path"] = "user_projects.PLSavedTensorsData"
    cfg = write_config(tmp_path / "config.yaml", config)
    cli = PLCLI(linear_classifier_class(pl), subclass_mode_data=True, args=["fit", f"--config={cfg}"],
                save_config_callback=None)  # fmt: skip
    own = {k: v for k, v in cli.datamodule.inner.hparams.items() if not k.startswith("_")}
    assert own == {"data_dir": str(tmp_path), "batch_size": 48, "shuffle": True}
    assert cli.trainer.global_step == sum(-(-int(k) // 48) for k in cli.datamodule.kept_history)


def test_user_wraps_a_save_hyperparameters_datamodule_without_the_cli(tmp_path):
    """Without the CLI the wrapped module's hparams are read from its own __init__, as before."""
    write_tensors(tmp_path)
    inner = SavedTensorsData(data_dir=str(tmp_path), batch_size=48)
    DynamicPruningDataModule(datamodule=inner, schedule=RollerCoasterSchedule(ratio=0.5))
    assert dict(inner.hparams) == {"data_dir": str(tmp_path), "batch_size": 48, "shuffle": True}


def test_user_nests_without_subclass_mode_and_the_cli_refuses_the_wrapper(tmp_path, capsys):
    """``LightningCLI(Model, UserData)`` accepts only UserData's own arguments under ``data``, so the nesting
    fails with jsonargparse's ``does not accept option 'data.init_args...'``; the README says to pass
    ``subclass_mode_data=True`` (or no DataModule class), which the test above does."""
    write_tensors(tmp_path)
    cfg = write_config(tmp_path / "config.yaml", nested_config(tmp_path))
    with pytest.raises(SystemExit):
        LightningCLI(LinearClassifier, SavedTensorsData, args=["fit", f"--config={cfg}"], save_config_callback=None)
    assert "does not accept option 'data.init_args" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("where", "key"),
    [
        (("data", "init_args", "schedule", "init_args"), "data.init_args.schedule.init_args.rato"),
        (("trainer",), "trainer.max_epoch"),
    ],
)
def test_user_misspells_a_key_and_the_first_line_names_it(tmp_path, capsys, where, key):
    """With ``parser_class=TEDArgumentParser`` (what ``lightning-ted`` uses) the first stderr line names the
    misspelt key, nested or top level, above jsonargparse's usage text."""
    write_tensors(tmp_path)
    config = nested_config(tmp_path)
    node = config
    for name in where:
        node = node[name]
    node[key.rsplit(".", 1)[-1]] = 3
    cfg = write_config(tmp_path / "config.yaml", config)
    with pytest.raises(SystemExit):
        LightningCLI(LinearClassifier, subclass_mode_data=True, parser_class=TEDArgumentParser,
                     args=["fit", f"--config={cfg}"], save_config_callback=None)  # fmt: skip
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("error: unknown key") and repr(key) in first
