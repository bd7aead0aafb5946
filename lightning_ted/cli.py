"""``lightning-ted``: LightningCLI with the pruning datamodule, method and schedule chosen in YAML.

    lightning-ted fit --config experiments/configs/mnist.yaml
    lightning-ted fit --config experiments/configs/mnist.yaml --data.init_args.method.init_args.q 0.8
    lightning-ted fit --config experiments/configs/mnist.yaml --print_config
    lightning-ted frontier --config experiments/configs/mnist.yaml   # is pruning worth it? (lightning_ted.frontier)

Model and data are subclass-mode (``class_path`` / ``init_args``). ``trainer.max_epochs`` is linked
into ``model.init_args.max_epochs`` (the LR decay) and into the schedule when it has a
``max_epochs`` argument, so neither can disagree with the Trainer. A ``TEDPruningCallback`` is added
when the data is a :class:`DynamicPruningDataModule` and the config lists none (the datamodule does it).
A config error keeps jsonargparse's message, under a first line that names the offending key.
"""

from __future__ import annotations

import re
import sys
from typing import NoReturn

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

_KEY = re.compile(r'^\s*(?:- )?Parser key "([^"]+)"')
_LEAF = re.compile(
    r"""(?:Option|Key|key) ['"]([^'"]+)['"] (?:is not accepted|is not expected)|No action for key ['"]([^'"]+)['"]"""
    r"""|does not accept option ['"]([^'"]+)['"]"""  # a top-level key: "Subcommand 'fit' does not accept option ..."
)


def bad_key_summary(message: str) -> str | None:
    """One line naming the key a nested jsonargparse error is about, e.g. ``unknown key
    data.init_args.schedule.init_args.rato`` (``None`` when the message names no unknown key)."""
    path: list[str] = []
    for line in message.splitlines():
        key = _KEY.match(line)
        if key:
            path.append(key.group(1))
            continue
        leaf = _LEAF.search(line)
        if leaf:
            name = leaf.group(1) or leaf.group(2) or leaf.group(3)
            full = ".init_args.".join([*path, name]) if path else name
            return f"unknown key {full!r} in the config or command line (check its spelling); full message below"
    return None


class TEDArgumentParser(LightningArgumentParser):
    """Puts the offending key on the first line of a config error: jsonargparse prints it after the usage
    text, 50 lines down. Any LightningCLI can use it: ``LightningCLI(..., parser_class=TEDArgumentParser)``."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        summary = bad_key_summary(message) if self.exit_on_error else None  # nested parsers raise instead
        if summary is not None:
            sys.stderr.write(f"error: {summary}\n")  # first on stderr, above the usage lines
            message = f"{summary}\n{message}"
        super().error(message, ex)


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


def run_cli(args: list[str] | None = None) -> TEDCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``) and return it, with its trainer, model and data."""
    return TEDCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_class=TEDArgumentParser,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    run_cli()
