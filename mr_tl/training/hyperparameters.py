"""The hyperparameters of a training run: one definition, with recipes, candidates, help and checks.

The train command's flags, the round job's options, the run's ``config.json``,
``--resume``'s comparison and the benchmarks all come from :data:`FIELDS`.

A *recipe* (:data:`RECIPES`, the one table of default values) gives every
field a value; flags given on the command line override it
(:func:`resolve`).  ``reference`` is Deeplearning4j's
ParameterAveragingTrainingMaster on Caltech-256 (seed 42, Xavier, Nesterovs
lr 0.01 momentum 0.8, batch 32 per worker, averaging every 5 minibatches,
plain averaging, no normalization, no hidden layer) and never changes;
``default`` (what ``python -m mr_tl.train`` uses without ``--recipe``) is what
measures best.  :class:`Hyperparameters` (one head's values) takes the
reference values as its defaults.

*Candidates* (:class:`Grid`, :class:`Candidates`): a product grid over
:data:`GRID_FIELDS` (``--candidates "lr=0.003,0.01,0.03 hidden=0,512"``);
every candidate is trained side by side in the same round jobs, and the run
keeps the best on validation.  Everything else (seed, workers, schedule,
batch size, outer optimizer, normalization) is shared: it decides the data
path and the minibatch order, which all candidates share.
"""

import argparse
import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self

from mr_tl.errors import UsageError
from mr_tl.normalization import KINDS as NORMALIZATIONS

OUTER_OPTIMIZERS = ("average", "block-momentum")


def parse_frequency(text: int | str) -> int:
    """``--averaging-frequency``: a number of minibatches, ``epoch`` (stored as 0) or ``Nepochs``
    (N passes over each worker's examples per round, stored as -N)."""
    if isinstance(text, int):   # already parsed (config.json of an older run may hold 0)
        return text
    text = str(text).strip().replace(" ", "")
    if text in ("epoch", "1epoch", "1epochs"):
        return 0
    if text.endswith(("epochs", "epoch")):
        number = text[:-6] if text.endswith("epochs") else text[:-5]
        if number.isdigit() and int(number) >= 1:
            return -int(number) if int(number) > 1 else 0
        raise argparse.ArgumentTypeError("expected e.g. 2epochs, found %r" % text)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of minibatches, 'epoch' or e.g. '2epochs', found %r"
                                         % text) from None
    if value < 1:   # 0 is 'epoch' inside, never on a command line
        raise argparse.ArgumentTypeError("averaging frequency must be at least 1 (or 'epoch', or e.g. '2epochs')")
    return value


def format_frequency(value: int) -> str | int:
    """The text form of an averaging frequency (what config.json shows)."""
    return "epoch" if value == 0 else "%depochs" % -value if value < 0 else value


def flag(name: str) -> str:
    """``block_lr`` -> ``--block-lr``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Field:
    name: str
    type: Callable[[Any], Any]
    default: object
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return flag(self.name)


def _optional_float(text: str | None) -> float | None:
    return None if text in (None, "", "None") else float(text)


# The recipes: every field's value, and the candidate grid.  The one place defaults are defined.
REFERENCE: dict[str, Any] = dict(
    seed=42, workers=2, averaging_frequency=5, batch_size=32, lr=0.01, momentum=0.8, l2=0.0,
    outer_optimizer="average", block_momentum=None, block_lr=1.0, hidden=0, normalization="none", candidates="none")
RECIPES = {
    # DL4J's ParameterAveragingTrainingMaster (the README's reference result); never changes
    "reference": REFERENCE,
    # what measures best (the README's schedule table); the lead sets the final values here
    "default": dict(REFERENCE, averaging_frequency="epoch", outer_optimizer="block-momentum",
                    candidates="lr=0.01,0.03,0.1 l2=0,1e-3,1e-2"),
}
DEFAULT_RECIPE = "default"


FIELDS = (
    Field("seed", int, REFERENCE["seed"], "seed of the initial weights, the worker of each example and the "
          "shuffles"),
    Field("workers", int, REFERENCE["workers"], "workers, i.e. parallel SGD replicas"),
    Field("averaging_frequency", parse_frequency, parse_frequency(REFERENCE["averaging_frequency"]),
          "minibatches per worker between averagings; 'epoch' = once per pass over each worker's examples; "
          "'2epochs', '4epochs' ... = after that many passes", metavar="K|epoch|Nepochs"),
    Field("batch_size", int, REFERENCE["batch_size"], "minibatch size per worker"),
    Field("lr", float, REFERENCE["lr"], "learning rate"),
    Field("momentum", float, REFERENCE["momentum"], "Nesterov momentum"),
    Field("l2", float, REFERENCE["l2"], "L2 regularization"),
    Field("outer_optimizer", str, REFERENCE["outer_optimizer"], "what the averaging step does with the workers' mean",
          choices=OUTER_OPTIMIZERS),
    Field("block_momentum", _optional_float, REFERENCE["block_momentum"], "block momentum eta, with "
          "--outer-optimizer block-momentum"),
    Field("block_lr", float, REFERENCE["block_lr"], "block learning rate zeta"),
    Field("hidden", int, REFERENCE["hidden"], "units of a hidden ReLU layer before the softmax (0: softmax only)"),
    Field("normalization", str, REFERENCE["normalization"], "feature normalization fitted on the train split: "
          "none, zscore, or sqrt-l2-zscore (signed square root, unit L2 rows, z-score)", choices=NORMALIZATIONS),
)

NAMES = tuple(f.name for f in FIELDS)


@dataclass(frozen=True)
class Hyperparameters:
    """What decides a run's result besides the data.  Checked on creation (:class:`UsageError`)."""

    seed: int = REFERENCE["seed"]
    workers: int = REFERENCE["workers"]
    averaging_frequency: int = parse_frequency(REFERENCE["averaging_frequency"])   # minibatches per round;
    # 0 = one pass over each worker's examples; -N = N passes
    batch_size: int = REFERENCE["batch_size"]
    lr: float = REFERENCE["lr"]
    momentum: float = REFERENCE["momentum"]
    l2: float = REFERENCE["l2"]
    outer_optimizer: str = REFERENCE["outer_optimizer"]
    block_momentum: float | None = REFERENCE["block_momentum"]  # None: 1 - 1/workers with block momentum, 0 plain
    block_lr: float = REFERENCE["block_lr"]
    hidden: int = REFERENCE["hidden"]
    normalization: str = REFERENCE["normalization"]

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.workers < 1:
            problems.append("--workers must be at least 1, found %d" % self.workers)
        if self.batch_size < 1:
            problems.append("--batch-size must be at least 1, found %d" % self.batch_size)
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append("--lr must be a positive number, found %r" % self.lr)
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            problems.append("--momentum must be in [0, 1), found %r" % self.momentum)
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            problems.append("--l2 must be >= 0, found %r" % self.l2)
        if self.outer_optimizer not in OUTER_OPTIMIZERS:
            problems.append("--outer-optimizer must be one of %s, found %r"
                            % (", ".join(OUTER_OPTIMIZERS), self.outer_optimizer))
        block_momentum = self.block_momentum
        if block_momentum is None:
            block_momentum = 1.0 - 1.0 / max(1, self.workers) if self.outer_optimizer == "block-momentum" else 0.0
            object.__setattr__(self, "block_momentum", block_momentum)
        if not (math.isfinite(block_momentum) and 0 <= block_momentum < 1):
            problems.append("--block-momentum must be in [0, 1), found %r" % block_momentum)
        if not (math.isfinite(self.block_lr) and self.block_lr > 0):
            problems.append("--block-lr must be a positive number, found %r" % self.block_lr)
        if self.hidden < 0:
            problems.append("--hidden must be >= 0, found %d" % self.hidden)
        if self.normalization not in NORMALIZATIONS:
            problems.append("--normalization must be one of %s, found %r"
                            % (", ".join(NORMALIZATIONS), self.normalization))
        if problems:
            raise UsageError("; ".join(problems))

    # -- the command line ----------------------------------------------------------

    @staticmethod
    def add_arguments(add: Callable[..., object], recipe_defaults: bool = False) -> None:
        """Declare every field as an option through ``add(flag, **kwargs)``: an argparse
        ``parser.add_argument`` or an MRJob's ``add_passthru_arg``.

        ``recipe_defaults``: every option defaults to None (not given: the recipe's value, see
        :func:`resolve`) and its help names the recipes' values; otherwise the defaults are the
        reference values (the round job, which is always given every value).
        """
        for f in FIELDS:
            kwargs: dict[str, Any] = {"type": f.type, "default": None if recipe_defaults else f.default, "help": f.help}
            if recipe_defaults:
                kwargs["help"] += " (%s)" % recipe_values(f.name)
            if f.metavar:
                kwargs["metavar"] = f.metavar
            if f.choices:
                kwargs["choices"] = f.choices
            add(f.flag, **kwargs)

    @classmethod
    def from_options(cls, options: object) -> Self:
        """From an argparse/mrjob options object with one attribute per field."""
        return cls(**{name: getattr(options, name) for name in NAMES})

    def to_args(self) -> list[str]:
        """The options that give these values (for a job's command line)."""
        args: list[str] = []
        for name in NAMES:
            value = getattr(self, name)
            if name == "averaging_frequency":
                value = format_frequency(value)
            args += [flag(name), repr(value) if isinstance(value, float) else str(value)]
        return args

    # -- config.json ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["averaging_frequency"] = format_frequency(self.averaging_frequency)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Self:
        obj = dict(obj)
        obj["averaging_frequency"] = parse_frequency(obj.get("averaging_frequency", 5))
        return cls(**{k: v for k, v in obj.items() if k in NAMES})

    def differences(self, other: "Hyperparameters") -> dict[str, tuple[Any, Any]]:
        """``{name: (mine, theirs)}`` of the fields that differ."""
        return {name: (getattr(self, name), getattr(other, name)) for name in NAMES
                if getattr(self, name) != getattr(other, name)}

    @property
    def passes_per_round(self) -> int:
        """Passes over each worker's examples per round (0: rounds of ``averaging_frequency`` minibatches)."""
        return 1 if self.averaging_frequency == 0 else -self.averaging_frequency if self.averaging_frequency < 0 else 0

    def describe_schedule(self) -> str:
        if self.passes_per_round:
            return "one pass" if self.passes_per_round == 1 else "%d passes" % self.passes_per_round
        return "%d minibatches of %d" % (self.averaging_frequency, self.batch_size)


def recipe_values(name: str) -> str:
    """``reference: 0.01; default: 0.01,0.03,0.1`` (the help of option ``name``)."""
    out: list[str] = []
    for recipe, values in RECIPES.items():
        grid = Grid.parse(values["candidates"])
        value = grid.values(name) if name in grid.names else values[name]
        if isinstance(value, tuple):
            value = ",".join(_text(v) for v in value)
        out.append("%s: %s" % (recipe, "1 - 1/workers" if value is None and name == "block_momentum" else value))
    return "; ".join(out)


# -- candidates -----------------------------------------------------------------------------

GRID_FIELDS = ("lr", "l2", "momentum", "hidden")   # what may differ between candidates, in axis order
_FIELD = {f.name: f for f in FIELDS}


def _text(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Grid:
    """A product grid over some of :data:`GRID_FIELDS`: ``axes = ((name, (value, ...)), ...)``.

    Axes are kept in :data:`GRID_FIELDS` order, values in the order given;
    candidate ``i`` is the ``i``-th element of the product, the first axis
    varying slowest (``lr=a,b hidden=0,8``: (a, 0), (a, 8), (b, 0), (b, 8)).
    The order matters: ties on validation go to the lower index.
    """

    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Self:
        """``"lr=0.003,0.01,0.03 l2=0,1e-4"``; ``none`` or empty: no grid.  Raises :class:`UsageError`."""
        text = "" if text is None else re.sub(r"\s*([=,])\s*", r"\1", str(text).strip())
        if text.lower() in ("", "none"):
            return cls()
        axes: dict[str, tuple[Any, ...]] = {}
        for part in text.split():
            name, sep, values = part.partition("=")
            name = name.replace("-", "_")
            if not sep or not values:
                raise UsageError("--candidates: expected NAME=V1,V2,... (e.g. lr=0.003,0.01,0.03), found %r" % part)
            if name not in GRID_FIELDS:
                raise UsageError("--candidates: %r cannot differ between candidates; only %s can (the others "
                                 "decide the data path and the minibatch order, which all candidates share)"
                                 % (name, ", ".join(GRID_FIELDS)))
            if name in axes:
                raise UsageError("--candidates: %s is given twice" % name)
            parsed: list[Any] = []
            for value in values.split(","):
                try:
                    value = _FIELD[name].type(value)
                except ValueError:
                    raise UsageError("--candidates: %s=%r is not a valid %s" % (name, value, name)) from None
                if value in parsed:
                    raise UsageError("--candidates: %s lists %s twice" % (name, _text(value)))
                parsed.append(value)
            axes[name] = tuple(parsed)
        return cls(tuple((name, axes[name]) for name in GRID_FIELDS if name in axes))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)

    def values(self, name: str) -> tuple[Any, ...]:
        return dict(self.axes)[name]

    @property
    def text(self) -> str:
        """The canonical form (config.json, the round job's option): ``none`` for no grid."""
        return " ".join("%s=%s" % (name, ",".join(_text(v) for v in values)) for name, values in self.axes) \
            or "none"

    def __len__(self) -> int:
        return math.prod(len(values) for _, values in self.axes)

    def points(self) -> list[dict[str, Any]]:
        """``[{name: value}]`` of every candidate, in candidate order."""
        names = self.names
        return [dict(zip(names, combo)) for combo in itertools.product(*(values for _, values in self.axes))]


class Candidates:
    """The heads a run trains side by side: shared values and a :class:`Grid` over the rest.

    ``candidates[i]`` is candidate ``i``'s :class:`Hyperparameters`.  One candidate
    (no grid, or one value per axis) is a run as before candidates existed:
    the same state names, checkpoints and round-job options.
    """

    def __init__(self, shared: Hyperparameters, grid: Grid = Grid()) -> None:
        points = grid.points()
        if len(points) == 1:   # one value per axis: one candidate, those values shared
            shared, grid = dataclasses.replace(shared, **points[0]), Grid()
        self.grid = grid
        # the shared values hold the first candidate's values of the grid's fields (always valid ones)
        self.shared = dataclasses.replace(shared, **points[0]) if grid.axes else shared
        self._each = [dataclasses.replace(self.shared, **point) for point in points] if grid.axes else [shared]

    def __len__(self) -> int:
        return len(self._each)

    def __getitem__(self, index: int) -> Hyperparameters:
        return self._each[index]

    def __iter__(self) -> Iterator[Hyperparameters]:
        return iter(self._each)

    def point(self, index: int) -> dict[str, Any]:
        """``{name: value}`` of the grid's fields for candidate ``index`` (``{}`` without a grid)."""
        return self.grid.points()[index] if self.grid.axes else {}

    def describe(self, index: int) -> str:
        """``lr=0.01 hidden=8``: what sets candidate ``index`` apart."""
        return " ".join("%s=%s" % (k, _text(v)) for k, v in self.point(index).items())

    # -- options and config.json -------------------------------------------------------

    @staticmethod
    def add_arguments(add: Callable[..., object], recipe_defaults: bool = False) -> None:
        """The fields' options and ``--candidates``: the grid as one text (the train command,
        ``recipe_defaults``), or one axis per ``--candidates`` (the round job: no spaces in its
        arguments, whatever shell or Hadoop streaming makes of them)."""
        Hyperparameters.add_arguments(add, recipe_defaults)
        if recipe_defaults:
            add("--candidates", default=None, metavar="GRID",
                help="train several heads side by side, a product grid over %s, e.g. \"lr=0.003,0.01,0.03 "
                     "hidden=0,512\"; the best on validation is the run's head; 'none': one head (%s)"
                     % (", ".join(GRID_FIELDS), recipe_values_of_grid()))
        else:
            add("--candidates", action="append", default=None, metavar="NAME=V1,V2,...",
                help="one axis of the candidates' grid (repeated for each axis)")

    @classmethod
    def from_options(cls, options: object) -> Self:
        """The round job's options (every value given; the grid's axes, if any)."""
        axes = getattr(options, "candidates", None)
        return cls(Hyperparameters.from_options(options),
                   Grid.parse(" ".join(axes) if isinstance(axes, list) else axes))

    def to_args(self) -> list[str]:
        """The round job's options for these candidates."""
        args = self.shared.to_args()
        for name, values in self.grid.axes:
            args += ["--candidates", "%s=%s" % (name, ",".join(_text(v) for v in values))]
        return args

    def to_dict(self) -> dict[str, Any]:
        """config.json's ``training``: every value, a list for a field the grid varies, and the grid."""
        out = self.shared.to_dict()
        for name, values in self.grid.axes:
            out[name] = list(values)
        out["candidates"] = self.grid.text
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Self:
        obj = dict(obj)
        grid = Grid.parse(obj.pop("candidates", None))
        for name in grid.names:
            obj.pop(name, None)
        return cls(Hyperparameters.from_dict(obj), grid)

    def differences(self, other: "Candidates") -> dict[str, tuple[Any, Any]]:
        """``{name: (mine, theirs)}`` of the values that differ (the grid as a whole is ``candidates``)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {name: (mine.get(name), theirs.get(name)) for name in list(NAMES) + ["candidates"]
                if mine.get(name) != theirs.get(name)}


def recipe_values_of_grid() -> str:
    return "; ".join("%s: %s" % (recipe, Grid.parse(values["candidates"]).text) for recipe, values in RECIPES.items())


def as_candidates(hyper: "Candidates | Hyperparameters") -> Candidates:
    """``hyper`` as :class:`Candidates` (a bare :class:`Hyperparameters` is one candidate)."""
    return hyper if isinstance(hyper, Candidates) else Candidates(hyper)


def resolve(recipe: str | None = None, given: Mapping[str, Any] | None = None) -> Candidates:
    """The run's :class:`Candidates` from a recipe and the values given on the command line.

    ``given``: ``{field or "candidates": value or None}`` (None: not given).  A value given
    for a field replaces the recipe's value; a value given for any field of the recipe's
    grid replaces the whole grid (``--lr 0.05`` trains one head, lr 0.05 and the recipe's
    other values: what was asked, not a grid around it); a field both given and an axis of
    ``--candidates`` is refused.
    """
    recipe = DEFAULT_RECIPE if recipe is None else recipe
    if recipe not in RECIPES:
        raise UsageError("--recipe must be one of %s, found %r" % (", ".join(RECIPES), recipe))
    given = {k: v for k, v in (given or {}).items() if v is not None}
    explicit = {name: given[name] for name in NAMES if name in given}
    if "candidates" in given:
        grid = Grid.parse(given["candidates"])
        both = [name for name in grid.names if name in explicit]
        if both:
            raise UsageError("%s and --candidates both give %s: give one"
                             % (", ".join(flag(n) for n in both), ", ".join(both)))
    else:
        grid = Grid.parse(RECIPES[recipe]["candidates"])
        if any(name in explicit for name in grid.names):
            grid = Grid()
    values: dict[str, Any] = {}
    for f in FIELDS:
        value = explicit.get(f.name, RECIPES[recipe][f.name])
        values[f.name] = f.type(value) if isinstance(value, str) and f.type is not str else value
    return Candidates(Hyperparameters(**values), grid)
