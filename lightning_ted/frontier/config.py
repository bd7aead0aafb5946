"""The user's LightningCLI config: what the frontier reads from it, and the overrides of each run.

The config is the one the user trains with (``lightning-ted fit --config my.yaml``). Each run is that
config with five values changed: ``trainer.max_epochs`` (the budget), the pruning method, the schedule's
ratio, the seed, and the Trainer's outputs (no logger, checkpoints or progress bars per run).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from lightning_ted.datamodule import DynamicPruningDataModule
from lightning_ted.frontier.errors import FrontierRefusal
from lightning_ted.frontier.plan import Run
from lightning_ted.methods import METHODS

DEFAULT_METRIC = "val_acc"
_MIN_WORDS = ("loss", "error", "perplexity", "ppl", "mse", "mae")


@dataclass(frozen=True)
class TaskConfig:
    """What the frontier needs from a config: its run length E, pruning method and ratio, metric and mode."""

    path: str
    base: dict
    max_epochs: int
    method: str
    ratio: float
    metric: str
    mode: str
    wandb: dict | None = None

    def fingerprint(self) -> str:
        """Hash of the config and metric: cached runs of another config are not mixed into this one's table."""
        text = json.dumps({"config": self.base, "metric": self.metric}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _import(class_path: str):
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _entries(value) -> list[dict]:
    """Callbacks or loggers as a list of ``{class_path, init_args}`` dicts (YAML allows one or a list)."""
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _named(entry: dict, suffix: str) -> bool:
    return str(entry.get("class_path", "")).endswith(suffix)


def method_name(spec) -> str:
    """The registry name of a config's method entry (``"ted"``, ``"infobatch"``, ...)."""
    if isinstance(spec, str):
        return spec
    cls = _import(spec.get("class_path", "")) if isinstance(spec, dict) else None
    return getattr(cls, "name", None) or (cls.__name__.lower() if cls else str(spec))


def method_spec(name: str) -> dict:
    """A config entry for the registered method ``name`` with its default arguments."""
    if name not in METHODS:
        raise FrontierRefusal(f"unknown method {name!r} in --methods; choose from {sorted(METHODS)}")
    cls = METHODS[name]
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}"}


def _ratio(schedule) -> float:
    if not isinstance(schedule, dict):
        return 0.5  # DynamicPruningDataModule's default RollerCoasterSchedule(0.5)
    given = schedule.get("init_args", {}).get("ratio")
    if given is not None:
        return float(given)
    cls = _import(schedule.get("class_path", ""))
    default = inspect.signature(cls).parameters.get("ratio") if cls else None
    return float(default.default) if default is not None and default.default is not inspect.Parameter.empty else 0.5


def load_config(path: str | Path, metric: str | None = None, mode: str | None = None) -> TaskConfig:
    """Read ``path`` and refuse what the frontier cannot answer (see :func:`parse_config`)."""
    return parse_config(yaml.safe_load(Path(path).read_text()) or {}, str(path), metric, mode)


def parse_config(base: dict, path: str, metric: str | None = None, mode: str | None = None) -> TaskConfig:
    """The frontier's view of a loaded config; refuses no pruning datamodule, no ``max_epochs``, a run
    length in steps or time, and ``EarlyStopping``."""
    data = base.get("data")
    data_cls = _import(data.get("class_path", "")) if isinstance(data, dict) else None
    if not (isinstance(data_cls, type) and issubclass(data_cls, DynamicPruningDataModule)):
        given = data.get("class_path") if isinstance(data, dict) else data
        raise FrontierRefusal(
            f"the config's data ({given!r}) is not a DynamicPruningDataModule, so there is no pruning to compare. "
            "Wrap your DataModule: data: {class_path: lightning_ted.DynamicPruningDataModule, init_args: "
            "{datamodule: {class_path: <yours>, init_args: ...}, method: ..., schedule: ...}}"
        )
    trainer = base.get("trainer") or {}
    epochs = trainer.get("max_epochs")
    if not isinstance(epochs, int) or epochs < 1:
        raise FrontierRefusal(
            f"trainer.max_epochs is {epochs!r}: set it to the run length E you train with; the budget points "
            "are fractions of it"
        )
    length = {k: trainer[k] for k in ("max_steps", "max_time") if trainer.get(k) not in (None, -1)}
    if length:
        raise FrontierRefusal(
            f"trainer sets {length}: the frontier compares runs by epochs (trainer.max_epochs and fractions of it); "
            "remove max_steps / max_time from the config so every run trains its whole budget"
        )
    stopper = next((c for c in _entries(trainer.get("callbacks")) if _named(c, "EarlyStopping")), None)
    if stopper is not None:
        raise FrontierRefusal(
            f"trainer.callbacks has {stopper['class_path']}: it would stop runs before their budget, so the "
            "frontier's run lengths would not be the ones reported; remove it from the config for the frontier"
        )
    init = data.get("init_args") or {}
    checkpoint = next((c for c in _entries(trainer.get("callbacks")) if _named(c, "ModelCheckpoint")), None)
    monitor = (checkpoint or {}).get("init_args", {}).get("monitor")
    if metric is None:
        metric = monitor or DEFAULT_METRIC
        if mode is None and monitor:
            mode = checkpoint.get("init_args", {}).get("mode", "min")  # ModelCheckpoint's own default
    if mode is None:
        mode = "min" if any(w in metric.lower() for w in _MIN_WORDS) else "max"
    wandb = next((lg for lg in _entries(trainer.get("logger")) if _named(lg, "WandbLogger")), None)
    return TaskConfig(
        path, base, epochs, method_name(init.get("method", "ted")), _ratio(init.get("schedule")),
        metric, mode, (wandb or {}).get("init_args", {}) if wandb is not None else None,
    )  # fmt: skip


def run_config(task: TaskConfig, run: Run, root: Path) -> dict:
    """The config of one run: ``run.epochs``, its method and ratio, its seed, and no per-run outputs."""
    cfg = copy.deepcopy(task.base)
    cfg.pop("ckpt_path", None)
    cfg["seed_everything"] = run.seed
    trainer = cfg.setdefault("trainer", {})
    trainer.update(
        max_epochs=run.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(root),
    )  # fmt: skip
    if "callbacks" in trainer:
        trainer["callbacks"] = [c for c in _entries(trainer["callbacks"]) if not _named(c, "ModelCheckpoint")]
    init = cfg["data"].setdefault("init_args", {})
    init["seed"] = run.seed
    if run.method == "full":
        init["method"] = method_spec("full")
    elif run.method != task.method:
        init["method"] = method_spec(run.method)
    ratio = 0.0 if run.method == "full" else run.level
    schedule = init.get("schedule")
    if isinstance(schedule, dict):
        schedule.setdefault("init_args", {})["ratio"] = ratio
    else:
        init["schedule"] = {"class_path": "lightning_ted.RollerCoasterSchedule", "init_args": {"ratio": ratio}}
    return cfg
