"""Train one run of the frontier from its config and measure it: the metric, saved sample-passes, time."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import lightning as L
import torch

from lightning_ted.adapters.datamodule import DynamicPruningDataModule
from lightning_ted.frontier.errors import FrontierRefusal
from lightning_ted.frontier.horizon import HorizonCheck
from lightning_ted.frontier.plan import Run


class MetricTap(L.Callback):
    """Keeps ``metric`` after each validation (epoch, value), so the last epoch's needs no extra pass, and
    how the model logs it (``{hook: (on_step, on_epoch)}``), so a per-batch value is not read as the epoch's."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.last: tuple[int, float] | None = None
        self.logged: dict[str, tuple[bool, bool]] = {}

    def _see(self, trainer: L.Trainer) -> None:
        results = getattr(trainer, "_results", None)  # Lightning's logged values of the running loop (private)
        for value in (results or {}).values():
            meta = getattr(value, "meta", None)
            if getattr(meta, "name", None) == self.metric:
                self.logged[meta.fx] = (bool(meta.on_step), bool(meta.on_epoch))

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        self._see(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        self._see(trainer)

    def step_only(self) -> list[str]:
        """The hooks logging the metric on_step only, when none logs it on_epoch (else empty)."""
        if any(on_epoch for _, on_epoch in self.logged.values()):
            return []
        return sorted(fx for fx, (on_step, _) in self.logged.items() if on_step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is not None and not trainer.sanity_checking:
            self.last = (trainer.current_epoch, float(value))


@contextmanager
def _quiet(threads: int | None) -> Iterator[None]:
    """Runs print no Lightning INFO lines or warnings and use ``threads`` torch threads; the caller's logging
    levels, warning filters and thread count are restored afterwards (the command may run inside a notebook)."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning_ted", "pytorch_lightning")
    levels = {name: logging.getLogger(name).level for name in names}
    before = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            for name in names:
                logging.getLogger(name).setLevel(logging.ERROR)
            if threads is not None:
                torch.set_num_threads(threads)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        torch.set_num_threads(before)


def final_metric(trainer: L.Trainer, model, dm, tap: MetricTap) -> float:
    """The metric at the end of training: the last epoch's validation, or one validation pass when the
    Trainer did not validate after its last epoch; refused, with the logged names, when it is not logged, and
    when it is logged per batch only (``on_epoch=False``: the last batch's value is not the epoch's)."""
    hooks = tap.step_only()
    if hooks:
        raise FrontierRefusal(
            f"the metric {tap.metric!r} is logged only on_step in {' and '.join(hooks)}: a per-batch value, not the "
            "epoch's, and the frontier reads the metric at the end of each run's last epoch. Log it with "
            f"self.log({tap.metric!r}, ..., on_epoch=True) (in validation_step, so it is measured on held-out data)"
        )
    if tap.last is not None and tap.last[0] == trainer.max_epochs - 1:
        return tap.last[1]
    trainer.validate(model, datamodule=dm, verbose=False)
    value = trainer.callback_metrics.get(tap.metric)
    if value is None:
        logged = sorted(k for k in trainer.callback_metrics if not k.startswith("prune/"))
        if not trainer.num_val_batches or not sum(trainer.num_val_batches):
            raise FrontierRefusal(
                f"no validation ran, so {tap.metric!r} was never measured: the data has no val_dataloader or "
                "trainer.limit_val_batches is 0; give the datamodule a validation split"
            )
        raise FrontierRefusal(
            f"the metric {tap.metric!r} is not logged by the model: it logs {logged or 'nothing'} in training "
            f"and validation. Pass --metric with one of those, or self.log({tap.metric!r}, ...) in validation_step."
        )
    return float(value)


_PARSER: list = []  # the CLI parser of this process, built by the first run


def _run_cli(config: dict):
    """The config's trainer, model and datamodule through the ``lightning-ted`` CLI, its parser built once
    per process (building it is most of a run's instantiation time; each run only parses its config)."""
    from lightning_ted.cli import TEDCLI, TEDArgumentParser  # deferred: building the CLI imports Lightning's

    class RunCLI(TEDCLI):
        def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
            if _PARSER:
                self.parser = _PARSER[0]
                return
            super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
            _PARSER.append(self.parser)

    return RunCLI(
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        parser_class=TEDArgumentParser, run=False, args=config, save_config_callback=None,
    )  # fmt: skip


def fit_one(
    config: dict, run: Run, metric: str, full_epochs: int, measure: Callable | None = None, threads: int | None = None
) -> dict:
    """Train ``run`` (its ``config`` from :func:`~lightning_ted.frontier.config.run_config`) and return its
    record: metric, saved fraction of sample-passes, fit seconds (``trainer.fit`` alone), run seconds and
    torch's thread count (``threads`` when given, else the process's as it is); ``measure(trainer, model,
    datamodule) -> dict`` (a module-level function, so workers can pickle it) adds its own measures under
    ``"extra"`` (the benchmark's test accuracy and flipped-label share)."""
    with _quiet(threads):
        return _fit_quietly(config, run, metric, full_epochs, measure, time.perf_counter())


def _fit_quietly(config: dict, run: Run, metric: str, full_epochs: int, measure: Callable | None, start: float) -> dict:
    cli = _run_cli(config)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    if not isinstance(dm, DynamicPruningDataModule):
        raise FrontierRefusal(f"the config's data is a {type(dm).__name__}, not a DynamicPruningDataModule")
    tap = MetricTap(metric)
    trainer.callbacks.extend([tap, HorizonCheck()])
    fit_start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_seconds = time.perf_counter() - fit_start
    value = final_metric(trainer, model, dm, tap)
    saved = 1.0 - run.epochs / full_epochs if run.method == "full" else dm.run.saved_fraction(run.epochs - 1)
    record = dict(
        method=run.method, level=run.level, seed=run.seed, epochs=run.epochs, saved=saved, metric=value,
        fit_seconds=fit_seconds, threads=torch.get_num_threads(),
    )  # fmt: skip
    record["method_config"] = config["data"]["init_args"].get("method")
    if measure is not None:
        record["extra"] = _measured(measure, trainer, model, dm)
    record["run_seconds"] = time.perf_counter() - start
    return record


def _measured(measure: Callable, trainer: L.Trainer, model, dm) -> dict:
    """``measure``'s dict with every value a plain number (a 0-d tensor becomes its float), so runs.jsonl can hold
    it; a measure that raises, returns no dict or a value that is no number is refused by name."""
    name = f"{getattr(measure, '__module__', '?')}.{getattr(measure, '__qualname__', repr(measure))}"
    try:
        extra = measure(trainer, model, dm)
    except Exception as e:
        raise FrontierRefusal(f"--measure {name} raised {type(e).__name__}: {e}") from e
    if not isinstance(extra, dict):
        raise FrontierRefusal(
            f"--measure {name} returned a {type(extra).__name__}: return a dict of measures, e.g. "
            "{'test_acc': 91.2}, which each run records under 'extra'"
        )
    out = {}
    for key, value in extra.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise FrontierRefusal(
                f"--measure {name} returned {key!r}: {type(value).__name__}; each measure must be a number (an int, a "
                "float or a one-element tensor), as runs.jsonl records and frontier.md tables them"
            )
        out[str(key)] = value
    return out
