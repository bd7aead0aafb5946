"""The interface every pruning method implements: state -> kept set, observations -> state.

It lives in the core because the run drives it (``core/run.py``, ``core/run_plan.py``); the methods themselves
(``lightning_ted.methods``) subclass it. Its warnings go through :mod:`lightning_ted.core.notices` (rank 0 only
under Lightning).
"""

from __future__ import annotations

import functools
import inspect
import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from lightning_ted.core.collective import Collective
from lightning_ted.core.method_inputs import EpochInputs, HeadStep, TrainedBefore
from lightning_ted.core.notices import warn
from lightning_ted.core.selection import Selection, min_kept
from lightning_ted.core.state import Column, Observations, ScoreState

#: default bound on any kept sample's loss weight (see :attr:`PruningMethod.max_weight`).
DEFAULT_MAX_WEIGHT = 10.0
#: mean kept weight above which a step is warned to be that many times plain training's step.
STEP_SCALE_WARNING = 2.0


class WeightBoundWarning(UserWarning):
    """A schedule or setting would weigh kept samples above ``max_weight``; the kept set was enlarged.

    Examples:
        >>> import warnings
        >>> from lightning_ted.methods import RandomSubset
        >>> with warnings.catch_warnings(record=True) as caught:  # 0.95 of 10 would keep 0: max_weight 10 keeps 1
        ...     warnings.simplefilter("always")
        ...     sel = RandomSubset(reweight=True).select(ScoreState(10), 0.95, torch.Generator())
        >>> len(sel), caught[0].category is WeightBoundWarning
        (1, True)
    """


class StepScaleWarning(UserWarning):
    """The kept samples weigh more than ``STEP_SCALE_WARNING`` on average: each step is that much larger.

    Examples:
        >>> import warnings
        >>> from lightning_ted.methods import RandomSubset
        >>> method = RandomSubset(reweight=True)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     method.check_step_scale(method.select(ScoreState(10), 0.8, torch.Generator()))  # 2 kept, weighing 5
        >>> issubclass(StepScaleWarning, UserWarning), caught[0].category is StepScaleWarning
        (True, True)
    """


class PruningMethod(ABC):
    """One pruning rule. The sampler, score state, sync and checkpointing are shared by all methods.

    Subclasses set ``name``, say whether they need head-gradient Taylor terms, and implement
    :meth:`select` (which samples an epoch keeps, with which weights) and :meth:`observation_value`
    (what one visit of a sample contributes to its score).

    ``max_weight`` (default 10, settable on every method: ``method.max_weight = 5`` or the constructor
    argument of the reweighting methods) bounds the loss weight of any kept sample. A ratio that would
    need more (``N / kept`` is 100 at ratio 0.99) keeps more samples instead, with one warning per
    method instance: a few samples weighing 100x make each step a noisy, huge one (accuracy fell to
    chance). ``math.inf`` lifts the bound. Methods that never reweigh (weight 1) ignore it.

    Examples:
        >>> class KeepFirst(PruningMethod):  # a minimal rule: keep the first samples, weight 1
        ...     name = "keep_first"
        ...     def select(self, state, prune_ratio, generator):
        ...         kept = state.num_samples - self.drop_count(state.num_samples, prune_ratio)
        ...         return Selection(torch.arange(kept), kept, 1.0, state.num_samples, prune_ratio)
        >>> len(KeepFirst().select(ScoreState(10), 0.3, torch.Generator())), KeepFirst().max_weight
        (7, 10.0)
    """

    name: str = "base"
    #: per-sample value the callback reads from the head besides the loss: ``None``, ``"taylor"``
    #: (TED's term), ``"el2n"`` (|dl/dz|), ``"grand"`` (head gradient norm) or ``"correct"`` (0/1).
    head_statistic: str | None = None
    #: the per-sample columns it keeps beside the scores (``state.columns[name]``), allocated by the state.
    columns: tuple[Column, ...] = ()
    #: whether ``expected_kept`` is exact (False when the kept count depends on the scores).
    exact_kept_count: bool = True
    #: whether every sample not scored yet is kept (TED): then an epoch trains each sample it has not seen.
    keeps_unscored: bool = False
    #: Polyak/EMA factor of the score update: ``s <- alpha s + (1 - alpha) v``.
    alpha: float = 0.0
    #: whether kept samples may weigh more than 1 (then ``max_weight`` caps the drop count).
    reweights: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_arguments(cls.__dict__["__init__"])

    @property
    def config(self) -> dict[str, Any]:
        """What this instance computes with: its class and every constructor argument, defaults filled in,
        plus the current ``max_weight``. Benchmarks key their cached runs on it, so a changed default
        is a new run, not an old number under the same name.

        >>> from lightning_ted.methods import TED
        >>> TED(q=0.8).config["q"], TED().config["score"], TED().config["class"]
        (0.8, 'igd', 'lightning_ted.methods.ted.TED')
        """
        cls = type(self)
        return {"class": f"{cls.__module__}.{cls.__qualname__}", **self.__dict__.get("_init_arguments", {}),
                "max_weight": self.max_weight}  # fmt: skip

    @property
    def max_weight(self) -> float:
        """Largest loss weight any kept sample may carry (``>= 1``; ``math.inf`` for no bound)."""
        return getattr(self, "_max_weight", DEFAULT_MAX_WEIGHT)

    @max_weight.setter
    def max_weight(self, value: float) -> None:
        value = float(value)
        if math.isnan(value) or value < 1.0:
            raise ValueError(
                f"max_weight must be >= 1 (the largest loss weight of a kept sample; math.inf for no bound), "
                f"got {value!r}"
            )
        self._max_weight = value

    def bind(self, max_epochs: int | None) -> None:  # noqa: B027 (optional hook, most methods ignore it)
        """Learn the run length from the Trainer (called at setup); methods with an end phase use it."""

    # ------------------------------------------------------------------ run hooks the callback calls
    def start_fit(self, pl_module: Any, fresh: bool) -> None:  # noqa: B027 (optional hook)
        """A fit starts (``fresh``: without a checkpoint); check the module, drop per-run state."""

    def start_epoch(self, trainer: Any, pl_module: Any, inputs: EpochInputs, head: Any) -> None:  # noqa: B027
        """A training epoch starts, its selection made (e.g. a forward-only pass over pruned samples)."""

    def head_values(self, step: HeadStep) -> Tensor:
        """The per-sample value this method reads from the head after a step (``head_statistic``)."""
        return step.capture.statistic(step.loss_grad, self.head_statistic)

    def run_state_dict(self, collective: Collective | None) -> dict:
        """Per-rank run state the run's checkpoint carries (e.g. reference gradients), gathered across ranks
        through ``collective`` (``None``: one process); empty here."""
        return {}

    def load_run_state_dict(self, state: dict, world: int, rank: int) -> None:  # noqa: B027 (optional hook)
        """Restore :meth:`run_state_dict` on rank ``rank`` of ``world``."""

    @abstractmethod
    def select(self, state: ScoreState, prune_ratio: float, generator: torch.Generator) -> Selection:
        """Kept samples and weights for an epoch whose schedule prunes ``prune_ratio`` of the data."""

    def min_kept(self, num_samples: int) -> int:
        """Fewest samples an epoch may keep so no weight exceeds ``max_weight`` (0 if weights stay 1)."""
        return min_kept(num_samples, self.max_weight) if self.reweights else 0

    def weight_limit(self) -> tuple[str, str]:
        """The setting that bounds the kept weights (so the fewest kept samples) and how to loosen it, for
        messages."""
        return f"max_weight={self.max_weight:g}", "raise the method's max_weight"

    def drop_count(self, num_samples: int, prune_ratio: float) -> int:
        """Samples the epoch drops: the schedule's ``round(p N)``, lowered to keep ``min_kept`` (warned once)."""
        wanted = int(round(prune_ratio * num_samples))
        n_drop = min(wanted, num_samples - self.min_kept(num_samples))
        if n_drop < wanted:
            kept, asked = num_samples - n_drop, num_samples - wanted
            limit, advice = self.weight_limit()
            heavy = f"weighing each {num_samples / asked:.3g}x" if asked else "leaving no sample to train on"
            self.warn_once(
                "ratio",
                f"pruning method {self.name!r}: prune ratio {prune_ratio:g} would keep {asked} of {num_samples} "
                f"samples, {heavy}, above {limit}; keeping {kept} "
                f"({1 - kept / num_samples:.3g} pruned) whenever the ratio is that high. Lower the schedule's "
                f"ratio, or {advice} if you want the heavier weights.",
            )
        return max(n_drop, 0)

    def warn_once(self, key: str, message: str, category: type[Warning] = WeightBoundWarning) -> None:
        """Emit ``message`` (a :class:`WeightBoundWarning` by default) the first time ``key`` comes up here."""
        warned = self.__dict__.setdefault("_warned", set())
        if key not in warned:
            warned.add(key)
            warn(message, category)

    def check_step_scale(self, selection: Selection) -> None:
        """Warn once when the kept samples weigh more than ``STEP_SCALE_WARNING`` on average.

        Weights that keep the loss an unbiased full-data estimate sum to about N, so their mean is about
        ``N / kept``: every step is that many times plain training's, as if the learning rate were
        multiplied by it. On the Fashion-MNIST frontier a 7x mean made SGD diverge on every seed.
        """
        mean = selection.mean_weight
        if mean > STEP_SCALE_WARNING * (1.0 + 1e-6):  # a bound of exactly 2 (TED's default) is not above it
            self.warn_once(
                "step_scale",
                f"pruning method {self.name!r} keeps {len(selection)} of {selection.num_samples} samples weighing "
                f"{mean:.2g} on average: each step is about {mean:.2g}x plain training's, as if the learning rate "
                "were multiplied by it (SGD diverged at 7x on Fashion-MNIST). Lower the learning rate or the "
                "ratio, or for TED keep its default step-scale bound (normalize=2.0) or pass normalize=True.",
                StepScaleWarning,
            )

    def expected_kept(self, num_samples: int, prune_ratio: float, epoch: int) -> int:
        """Kept count the schedule implies for ``epoch`` once every sample is scored. The rules here drop
        unscored samples too (RS2 needs no score, UCB ranks them with the rest), so epoch 0 is no exception;
        rules that never drop an unscored sample (TED) count those in :meth:`kept_range`."""
        return num_samples - self.drop_count(num_samples, prune_ratio)

    def kept_range(self, num_samples: int, prune_ratio: float, epoch: int, before: TrainedBefore) -> tuple[int, int]:
        """Fewest and most samples ``epoch`` keeps, given what the run trained before it (``before``, the run
        plan's bounds); equal when the count is known in advance. Here the count does not depend on which
        samples were scored: :meth:`expected_kept` both ways."""
        kept = self.expected_kept(num_samples, prune_ratio, epoch)
        return kept, kept

    def observation_value(self, obs: Observations) -> Tensor:
        """Value that one visit contributes to a sample's score (default: its loss)."""
        return obs.loss

    def update(self, state: ScoreState, obs: Observations, epoch: int) -> None:
        """Fold one epoch's gathered observations into the state."""
        state.apply(obs.index, self.observation_value(obs), self.alpha, epoch)

    def state_dict(self) -> dict:
        return {"name": self.name}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(
                f"the checkpoint was trained with pruning method {state.get('name')!r} but this run uses "
                f"{self.name!r}; resume with the same method or start a new run."
            )


def _recording_arguments(init: Any) -> Any:
    """``init`` that first records its bound arguments (defaults applied) on the instance, once: the outermost
    constructor of a subclass chain records what the user asked for (see :attr:`PruningMethod.config`)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recorded(self: PruningMethod, *args: Any, **kwargs: Any) -> None:
        if "_init_arguments" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(signature.parameters)))  # self
            for name, param in signature.parameters.items():  # **kwargs flattened into the record
                if param.kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(arguments.pop(name, {}))
            self._init_arguments = arguments
        init(self, *args, **kwargs)

    return recorded
