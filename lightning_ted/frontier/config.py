"""The user's LightningCLI config: what the frontier reads from it, and the overrides of each run.

The config is the one the user trains with (``lightning-ted fit --config my.yaml``). Each run is that
config with five values changed: ``trainer.max_epochs`` (the budget), the pruning method, the schedule's
ratio, the seed, and the Trainer's outputs (no logger, checkpoints or progress bars per run, so callbacks
that only feed a logger are left out). User modules import from the current folder and the config's folder,
as ``python -m`` and LightningCLI scripts beside their configs would.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from lightning_ted.adapters.datamodule import DynamicPruningDataModule
from lightning_ted.frontier.errors import FrontierRefusal
from lightning_ted.frontier.metric import resolve_mode
from lightning_ted.frontier.plan import Run
from lightning_ted.frontier.versions import library_versions
from lightning_ted.methods import METHODS

DEFAULT_METRIC = "val_acc"
# Callbacks that only feed a logger and refuse to start without one: runs (which have none) leave them out.
LOGGER_CALLBACKS = ("LearningRateMonitor", "DeviceStatsMonitor")


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
        """Hash of the config, the metric and the lightning-ted and library versions: cached runs of another
        config or release are not mixed into this one's table (they are trained again)."""
        return _hash({"config": self.base, "metric": self.metric, "versions": library_versions()})

    def full_fingerprint(self) -> str:
        """:meth:`fingerprint` without the pruning method and schedule, which plain training ignores: configs
        that differ only there share their plain-training runs in one output folder."""
        base = copy.deepcopy(self.base)
        init = (base.get("data") or {}).get("init_args") or {}
        for key in ("method", "schedule"):
            init.pop(key, None)
        return _hash({"config": base, "metric": self.metric, "versions": library_versions(), "runs": "full"})


def _hash(payload: dict) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def level_argument(schedule: dict | None) -> str:
    """The schedule argument a run's level sets: ``ratio``, unless the class names another (``level_argument``:
    ``saved`` for a budget, ``tolerance`` for :mod:`lightning_ted.core.adaptive_schedules`)."""
    cls = _import(schedule.get("class_path", "")) if isinstance(schedule, dict) else None
    return getattr(cls, "level_argument", "ratio")


def add_import_paths(config_path: str | Path) -> list[str]:
    """Put the current folder and the config's folder first on ``sys.path`` (as ``python -m`` and a script
    beside its config would), so user modules import without PYTHONPATH; returns the folders."""
    folders = [os.getcwd(), str(Path(config_path).resolve().parent)]
    for i, folder in enumerate(dict.fromkeys(folders)):
        if folder not in sys.path:
            sys.path.insert(i, folder)
    return list(dict.fromkeys(folders))


def _class_paths(node, where: str = ""):
    """Every ``(key, class_path)`` of a config, e.g. ``("model.init_args.net", "my.Net")``."""
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str):
            yield where, node["class_path"]
        for key, value in node.items():
            yield from _class_paths(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _class_paths(value, f"{where}[{i}]")


def check_imports(base: dict, folders: list[str]) -> None:
    """Import every dotted ``class_path`` of the config, so a missing or broken user module stops the command
    here, named with its key and the folders looked in, not inside the first run as a parser error."""
    for where, class_path in _class_paths(base):
        module, _, name = class_path.rpartition(".")
        if not module:
            continue  # a short name (``ModelCheckpoint``): LightningCLI resolves it
        key = f"{where}.class_path"
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and (module == e.name or module.startswith(e.name + ".")):
                looked = f" (looked first in {' and '.join(folders)}: the current and the config's folder)"
                raise FrontierRefusal(
                    f"{key} {class_path!r}: no module named {e.name!r} on the import path"
                    f"{looked if folders else ''}; put {e.name.split('.')[0]}.py (or its package) beside the config "
                    "or in the folder you run from, or add its folder to PYTHONPATH"
                ) from e
            raise FrontierRefusal(f"importing {module!r} ({key}) failed: {type(e).__name__}: {e}") from e
        except Exception as e:  # the user's module raised while importing
            raise FrontierRefusal(f"importing {module!r} ({key}) failed: {type(e).__name__}: {e}") from e
        if not hasattr(loaded, name):
            raise FrontierRefusal(f"{key} {class_path!r}: module {module!r} has no {name!r}")


def with_classes(base: dict, model_class: str | None = None, data_class: str | None = None) -> dict:
    """The config with ``model:`` / ``data:`` init args put under the class a LightningCLI script would name
    (``LightningCLI(MyModel, MyData)``): ``--model-class`` / ``--data-class``. Entries with a class_path stay."""
    base = dict(base)
    for key, given in (("model", model_class), ("data", data_class)):
        entry = base.get(key)
        if given and (entry is None or (isinstance(entry, dict) and "class_path" not in entry)):
            base[key] = {"class_path": given, "init_args": entry or {}}
    return base


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


def load_measure(path: str):
    """The ``--measure`` function ``module.function`` (imported from the config's and the current folder, as
    the config's classes are), refused when it does not import or is not callable."""
    module, _, name = path.rpartition(".")
    if not module:
        raise FrontierRefusal(f"--measure {path!r}: give a dotted path, module.function (e.g. my_measures.test_acc)")
    try:
        loaded = importlib.import_module(module)
    except Exception as e:
        raise FrontierRefusal(f"--measure {path!r}: importing {module!r} failed: {type(e).__name__}: {e}") from e
    fn = getattr(loaded, name, None)
    if not callable(fn):
        raise FrontierRefusal(f"--measure {path!r}: module {module!r} has no function {name!r}")
    return fn


def method_spec(name: str) -> dict:
    """A config entry for the registered method ``name`` with its default arguments."""
    if name not in METHODS:
        raise FrontierRefusal(f"unknown method {name!r} in --methods; choose from {sorted(METHODS)}")
    cls = METHODS[name]
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}"}


def _ratio(schedule) -> float:
    if not isinstance(schedule, dict):
        return 0.5  # DynamicPruningDataModule's default RollerCoasterSchedule(0.5)
    argument = level_argument(schedule)
    given = schedule.get("init_args", {}).get(argument)
    if given is not None:
        return float(given)
    cls = _import(schedule.get("class_path", ""))
    default = inspect.signature(cls).parameters.get(argument) if cls else None
    return float(default.default) if default is not None and default.default is not inspect.Parameter.empty else 0.5


def load_config(
    path: str | Path, metric: str | None = None, mode: str | None = None,
    model_class: str | None = None, data_class: str | None = None,
) -> TaskConfig:  # fmt: skip
    """Read ``path`` (its user modules importable from the current and the config's folder) and refuse what
    the frontier cannot answer (see :func:`parse_config`)."""
    folders = add_import_paths(path)
    base = with_classes(yaml.safe_load(Path(path).read_text()) or {}, model_class, data_class)
    return parse_config(base, str(path), metric, mode, folders)


def parse_config(
    base: dict, path: str, metric: str | None = None, mode: str | None = None, folders: list[str] | None = None
) -> TaskConfig:
    """The frontier's view of a loaded config; refuses ``model:`` / ``data:`` without a class, a class_path
    that does not import, no pruning datamodule, no ``max_epochs``, a run length in steps or time,
    ``EarlyStopping`` and a metric whose direction is unknown or contradicted."""
    for key, option in (("model", "--model-class"), ("data", "--data-class")):
        entry = base.get(key)
        if not isinstance(entry, dict) or "class_path" not in entry:
            what = f"has init args ({', '.join(sorted(entry))}) but no class_path" if entry else "is missing"
            raise FrontierRefusal(
                f"the config's {key}: {what}. A plain LightningCLI config leaves the class to the script "
                f"(LightningCLI(MyModel, MyData)): pass it with {option} my_module.MyClass, or write "
                f"{key}: {{class_path: my_module.MyClass, init_args: {{...}}}}"
                + (" (--data-class lightning_ted.DynamicPruningDataModule for its datamodule, method and schedule)"
                   if key == "data" else "")
            )  # fmt: skip
    check_imports(base, folders or [])
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
    metric = metric or ((checkpoint or {}).get("init_args") or {}).get("monitor") or DEFAULT_METRIC
    mode = resolve_mode(metric, mode, checkpoint)
    wandb = next((lg for lg in _entries(trainer.get("logger")) if _named(lg, "WandbLogger")), None)
    return TaskConfig(
        path, base, epochs, method_name(init.get("method", "ted")), _ratio(init.get("schedule")),
        metric, mode, (wandb or {}).get("init_args", {}) if wandb is not None else None,
    )  # fmt: skip


def logger_callbacks(task: TaskConfig) -> list[str]:
    """The config's callbacks that need a logger (:data:`LOGGER_CALLBACKS`): runs leave them out, with a note."""
    callbacks = _entries((task.base.get("trainer") or {}).get("callbacks"))
    return [name for name in LOGGER_CALLBACKS if any(_named(c, name) for c in callbacks)]


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
        dropped = ("ModelCheckpoint", *LOGGER_CALLBACKS)
        trainer["callbacks"] = [c for c in _entries(trainer["callbacks"]) if not any(_named(c, d) for d in dropped)]
    init = cfg["data"].setdefault("init_args", {})
    init["seed"] = run.seed
    if run.method == "full":
        init["method"] = method_spec("full")
    elif run.method != task.method:
        init["method"] = method_spec(run.method)
    schedule = init.get("schedule")
    if run.method == "full":  # plain training: no schedule to read (full_fingerprint leaves it out too)
        init["schedule"] = {"class_path": "lightning_ted.ConstantSchedule", "init_args": {"ratio": 0.0}}
    elif isinstance(schedule, dict):
        schedule.setdefault("init_args", {})[level_argument(schedule)] = run.level
    else:
        init["schedule"] = {"class_path": "lightning_ted.RollerCoasterSchedule", "init_args": {"ratio": run.level}}
    return cfg
