"""``lightning-ted``: LightningCLI with the pruning datamodule, method and schedule chosen in YAML.

    lightning-ted fit --config experiments/configs/mnist.yaml
    lightning-ted fit --config experiments/configs/mnist.yaml --data.init_args.method.init_args.q 0.8
    lightning-ted fit --config experiments/configs/mnist.yaml --print_config

Model and data are subclass-mode (``class_path`` / ``init_args``). ``trainer.max_epochs`` is linked
into ``model.init_args.max_epochs`` (the LR decay) and into the schedule when it has a
``max_epochs`` argument, so neither can disagree with the Trainer. A ``TEDPruningCallback`` is added
when the data is a :class:`DynamicPruningDataModule` and the config lists none.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from lightning_ted.callback import TEDPruningCallback
from lightning_ted.datamodule import DynamicPruningDataModule


class TEDCLI(LightningCLI):
    """LightningCLI that links the run length and makes sure the pruning callback is present."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("trainer.max_epochs", "model.init_args.max_epochs")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        schedule = config.get("data", {}).get("init_args", {}).get("schedule")
        epochs = config.get("trainer", {}).get("max_epochs")
        if schedule is not None and epochs is not None and "max_epochs" in schedule.get("init_args", {}):
            given = schedule["init_args"]["max_epochs"]
            if given not in (None, epochs):
                raise ValueError(
                    f"the schedule's max_epochs={given} disagrees with trainer.max_epochs={epochs}; leave "
                    "data.init_args.schedule.init_args.max_epochs unset: it is linked to trainer.max_epochs."
                )
            schedule["init_args"]["max_epochs"] = epochs

    def before_fit(self) -> None:
        self._ensure_callback()

    def _ensure_callback(self) -> None:
        trainer: L.Trainer = self.trainer
        if not isinstance(self.datamodule, DynamicPruningDataModule):
            return
        if not any(isinstance(cb, TEDPruningCallback) for cb in trainer.callbacks):
            rank_zero_info("lightning-ted: added TEDPruningCallback() (the config lists none)")
            trainer.callbacks.insert(0, TEDPruningCallback())


def run_cli(args: list[str] | None = None) -> TEDCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``) and return it, with its trainer, model and data."""
    return TEDCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def main() -> None:
    """Entry point of the ``lightning-ted`` console script (returns nothing, so the exit status is 0)."""
    run_cli()


if __name__ == "__main__":
    main()
